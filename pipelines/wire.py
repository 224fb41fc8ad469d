"""What crosses the build's shuffles, and how it is encoded.

An engine whose workers are processes (Dask, Dataflow, Beam's multi_processing mode) pickles every
element that crosses a grouping. So each grouping carries only what the stage after it needs, in a
form that is cheap to pickle and to hold (bench/shuffle_bytes.py measures it):

- **Integer sequences as bytes**: token ids, segment ids and NER token starts are packed into the
  smallest integer type that holds them (a Python list of ints pickles one opcode per int, and
  unpickles into one object per int above 256; bytes pickle as one copy). Logits travel as float32
  bytes (a list of Python floats takes 9 bytes a value).
- **The teacher sees no text**: a `TeacherRow` holds the token ids, the gold for judging, the keys for
  deduplication and the join; the row's stored columns (the `Variant`) go straight to its run, where
  `Labelled` (ids and logits) meets it by `row_key`.
- **Rows travel in chunks**: a stage that handles a group emits one element per destination group and
  chunk of rows (`chunked`), not one per row, so the per-element costs of a shuffle (the key, the
  runner's window wrapper, Dask's per-element bookkeeping) are paid per chunk.
- **A chunk is one bytes object** (`pack_chunk`), pickled by the task that made it and unpickled by the
  task that uses it. A worker hands bytes to its peer as one copy; a list of rows is walked object by
  object on the worker's communication thread, which on Dask waits for the task thread's interpreter
  lock while the peer that asked for the rows waits too. These bytes are made and read by one build's
  own workers, never stored.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Hashable, Iterable, Iterator
from typing import NamedTuple

import numpy as np

from zhkd.augment.example import Variant

# Packed integers: one byte naming the type, then the values. Ordered smallest first; ids are int32 in
# the shards, so nothing wider is needed.
_INT_TYPES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.int32))
CHUNK_ROWS = 512  # rows per element a stage emits to one destination group


def pack_ints(values) -> bytes:
    """Integers as the smallest type in `_INT_TYPES` that holds them all (int32 for values beyond)."""
    array = np.asarray(values, dtype=np.int64)
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    for code, dtype in enumerate(_INT_TYPES):
        limits = np.iinfo(dtype)
        if limits.min <= low and high <= limits.max:
            return bytes((code,)) + array.astype(dtype).tobytes()
    raise ValueError(f"integers out of int32 range ({low}..{high})")


def unpack_ints(data: bytes) -> np.ndarray:
    """The integers `pack_ints` packed, as a read-only int64 array."""
    return np.frombuffer(data, dtype=_INT_TYPES[data[0]], offset=1).astype(np.int64)


def packed_count(data: bytes) -> int:
    return (len(data) - 1) // _INT_TYPES[data[0]].itemsize


def pack_segments(values: list[int] | None) -> bytes | None:
    """Segment (token type) ids: None when the tokenizer gives none, b"" when all are 0 (one segment, the
    usual case), else packed."""
    if values is None:
        return None
    return pack_ints(values) if any(values) else b""


def pack_floats(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype=np.float32).tobytes()


def unpack_floats(data: bytes, width: int | None = None) -> np.ndarray:
    """float32 values; reshaped to rows of `width` (per-token logits) when given."""
    values = np.frombuffer(data, dtype=np.float32)
    return values if width is None else values.reshape(-1, width)


def row_key(variant: Variant) -> bytes:
    """A digest of every field of a row: its logits find it in its run by this key (two rows with the same
    key are the same row). 16 bytes of blake2b: a collision among even 10^12 rows has odds below 10^-14."""
    return hashlib.blake2b(repr(tuple(variant)).encode("utf-8"), digest_size=16).digest()


class TeacherRow(NamedTuple):
    """What the teacher, deduplication and the judge need of a row (its text stays behind)."""

    id: str
    row_key: bytes
    dedup_key: bytes  # the normalised text's digest: rows with the same key are duplicates
    is_original: bool
    input_ids: bytes  # packed
    token_type_ids: bytes | None  # `pack_segments`
    token_starts: bytes | None  # packed; NER only: each word's first piece, -1 where it has none
    gold: int | tuple | bytes | None  # a label index, a multilabel set, NER tag indices (packed), or None
    truncated: bool  # cut to the teacher's limit

    @classmethod
    def make(cls, variant: Variant, encoding, dedup_key: bytes, gold) -> TeacherRow:
        """From a variant and its `zhkd.pipelines.teacher.Encoding`, packed."""
        starts = None if encoding.token_starts is None else pack_ints(encoding.token_starts)
        return cls(variant.id, row_key(variant), dedup_key, variant.is_original, pack_ints(encoding.input_ids),
                   pack_segments(encoding.token_type_ids), starts, gold, encoding.truncated)

    @property
    def length(self) -> int:
        return packed_count(self.input_ids)


class Labelled(NamedTuple):
    """A row's teacher columns, on their way to the row's run."""

    row_key: bytes
    input_ids: bytes  # packed
    token_starts: bytes | None  # packed (NER)
    logits: bytes  # float32


def pack_chunk(values: list) -> bytes:
    """A chunk of rows as one bytes object (see the module's note)."""
    return pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_chunk(data: bytes) -> list:
    """The rows `pack_chunk` packed (bytes this build's workers made; nothing from outside)."""
    return pickle.loads(data)


def chunked(keyed: Iterable[tuple[Hashable, object]], size: int = CHUNK_ROWS) -> Iterator[tuple[Hashable, list]]:
    """(key, value) pairs as (key, [values]) chunks of at most `size` values per key, each key's values in
    their order; a chunk is emitted when full, the rest at the end."""
    open_chunks: dict[Hashable, list] = {}
    for key, value in keyed:
        chunk = open_chunks.setdefault(key, [])
        chunk.append(value)
        if len(chunk) >= size:
            yield key, open_chunks.pop(key)
    yield from open_chunks.items()
