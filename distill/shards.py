"""Shard format v1: the one contract between the Beam sink (writer) and the trainer (reader).

A dataset directory holds Arrow IPC *stream* files (what `datasets` memory-maps), the
`state.json` / `dataset_info.json` that `datasets.load_from_disk` reads, `manifest.json` (per-shard
rows, bytes and sha256, counts, config, fingerprints), a data card, and `COMPLETED`, written last.
A directory without `COMPLETED` is not a dataset. Logits are raw (temperature 1); the trainer
chooses the temperature. Imports pyarrow only: no torch, no Beam.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from distill.errors import DistillError

FORMAT_VERSION = 1
TASKS = ("classification", "pair", "ner")
MANIFEST = "manifest.json"
COMPLETED = "COMPLETED"
META_PREFIX = "zhkd."


class DatasetError(DistillError):
    """A dataset directory is partial, corrupted or not of this format; the message names the file."""


def schema_for(task: str, *, label_names: list[str], metadata: dict[str, str] | None = None) -> pa.Schema:
    """The column layout of a task; `metadata` (teacher, tokenizer, config hash) goes in the schema."""
    if task not in TASKS:
        raise DatasetError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
    if task == "ner":
        fields += [
            pa.field("tokens", pa.list_(pa.string()), nullable=False),
            pa.field("tags", pa.list_(pa.int32())),  # gold, null for unlabelled rows
        ]
    else:
        fields += [pa.field("text_pair", pa.string()), pa.field("label", pa.int32())]
    fields += [
        pa.field("is_original", pa.bool_(), nullable=False),
        pa.field("ops", pa.list_(pa.string()), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
    ]
    if task == "ner":
        # token_starts[i]: index in input_ids of token i's first piece, -1 where it has none.
        fields += [
            pa.field("token_starts", pa.list_(pa.int32()), nullable=False),
            pa.field("teacher_logits", pa.list_(pa.list_(pa.float32())), nullable=False),
        ]
    else:
        fields.append(pa.field("teacher_logits", pa.list_(pa.float32()), nullable=False))
    meta = {
        "format_version": str(FORMAT_VERSION),
        "task": task,
        "label_names": json.dumps(label_names, ensure_ascii=False),
        "logits": "raw, T=1",
        **(metadata or {}),
    }
    return pa.schema(fields, metadata={f"{META_PREFIX}{k}": v for k, v in meta.items()})


def schema_metadata(schema: pa.Schema) -> dict[str, str]:
    """The zhkd metadata of a schema, without the prefix."""
    raw = schema.metadata or {}
    return {
        k.decode()[len(META_PREFIX) :]: v.decode() for k, v in raw.items() if k.decode().startswith(META_PREFIX)
    }


def shard_of(row_id: str, num_shards: int) -> int:
    """A row's shard depends on its id alone, never on timing or worker count."""
    digest = hashlib.blake2b(row_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_name(index: int, num_shards: int) -> str:
    return f"data-{index:05d}-of-{num_shards:05d}.arrow"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    file: str
    rows: int
    bytes: int
    sha256: str


def write_shard(rows: list[dict], path: Path, schema: pa.Schema) -> ShardInfo:
    """Rows sorted by id, as one Arrow stream, written under a temporary name and renamed."""
    path = Path(path)
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["id"]), schema=schema)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        if table.num_rows:
            writer.write_table(table, max_chunksize=1000)
        else:  # one empty batch: datasets cannot load a stream that has none
            writer.write_batch(pa.RecordBatch.from_pylist([], schema=schema))
    os.replace(tmp, path)
    return ShardInfo(path.name, table.num_rows, path.stat().st_size, file_sha256(path))


def _feature(arrow_type: pa.DataType) -> dict:
    """The `datasets` feature description of one of the format's Arrow types."""
    if pa.types.is_list(arrow_type):
        return {"feature": _feature(arrow_type.value_type), "_type": "List"}
    dtype = {pa.string(): "string", pa.bool_(): "bool", pa.int32(): "int32", pa.float32(): "float32"}[arrow_type]
    return {"dtype": dtype, "_type": "Value"}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def finalize(out_dir: Path, schema: pa.Schema, shards: list[ShardInfo], manifest: dict) -> dict:
    """Write the `datasets` state files and the manifest, then `COMPLETED` last.

    `manifest` carries the producer's part (counts, config and its hash, fingerprints); this adds
    the format version, task, label names and the per-shard table.
    """
    out_dir = Path(out_dir)
    meta = schema_metadata(schema)
    shards = sorted(shards, key=lambda s: s.file)
    _write_json(
        out_dir / "dataset_info.json",
        {
            "citation": "",
            "description": f"zhkd soft-label dataset ({meta['task']}); see README.md and manifest.json",
            "features": {f.name: _feature(f.type) for f in schema},
            "homepage": "",
            "license": "",
        },
    )
    _write_json(
        out_dir / "state.json",
        {
            "_data_files": [{"filename": s.file} for s in shards],
            "_fingerprint": hashlib.sha256("".join(s.sha256 for s in shards).encode()).hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        },
    )
    full = {
        **manifest,
        "format_version": FORMAT_VERSION,
        "task": meta["task"],
        "label_names": json.loads(meta["label_names"]),
        "total_rows": sum(s.rows for s in shards),
        "shards": [asdict(s) for s in shards],
    }
    _write_json(out_dir / MANIFEST, full)
    (out_dir / COMPLETED).write_text(full.get("config_hash", "") + "\n", encoding="utf-8")
    return full


def read_manifest(out_dir: Path) -> dict:
    """The manifest of a complete dataset; refuses a partial directory."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: no such dataset directory")
    if not (out_dir / COMPLETED).exists():
        raise DatasetError(f"{out_dir / COMPLETED}: missing; the build did not finish, so this is not a dataset")
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text("utf-8"))
    except FileNotFoundError as err:
        raise DatasetError(f"{out_dir / MANIFEST}: missing") from err
    except json.JSONDecodeError as err:
        raise DatasetError(f"{out_dir / MANIFEST}: not valid JSON ({err})") from err
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{out_dir / MANIFEST}: format version {manifest.get('format_version')!r}, "
            f"this zhkd reads {FORMAT_VERSION}"
        )
    return manifest


def validate(out_dir: Path, *, check_checksums: bool = True) -> dict:
    """Check COMPLETED, the manifest, every shard's size, checksum and schema; return the manifest."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    expected = schema_for(manifest["task"], label_names=manifest["label_names"])
    for shard in manifest["shards"]:
        path = out_dir / shard["file"]
        if not path.exists():
            raise DatasetError(f"{path}: listed in the manifest but missing")
        if path.stat().st_size != shard["bytes"]:
            raise DatasetError(f"{path}: {path.stat().st_size} bytes, the manifest says {shard['bytes']}")
        if check_checksums and file_sha256(path) != shard["sha256"]:
            raise DatasetError(f"{path}: sha256 differs from the manifest (the file is corrupted)")
        try:
            with pa.memory_map(str(path)) as source:
                reader = pa.ipc.open_stream(source)
                schema = reader.schema
                rows = sum(batch.num_rows for batch in reader)
        except pa.ArrowInvalid as err:
            raise DatasetError(f"{path}: not an Arrow stream ({err})") from err
        if not schema.remove_metadata().equals(expected.remove_metadata()):
            raise DatasetError(f"{path}: schema differs from format v{FORMAT_VERSION} for task {manifest['task']}")
        if schema_metadata(schema).get("label_names") != json.dumps(manifest["label_names"], ensure_ascii=False):
            raise DatasetError(f"{path}: label names differ from the manifest's")
        if rows != shard["rows"]:
            raise DatasetError(f"{path}: {rows} rows, the manifest says {shard['rows']}")
    return manifest


GROUP_WINDOW = 50  # steps sorted by length together: enough to find peers, few enough to stay shuffled


class EpochOrder:
    """A seeded order over rows held in parts (blocks of shards; one list of rows), one rank's share of it,
    and the position in it.

    Each epoch shuffles the order of the parts, then the rows inside each part (seeded by seed, epoch
    and part), so the order is the same on every run and only one part's permutation is held at a time.
    Rank r of W takes the epoch positions r, r+W, r+2W, ...: every row exactly once per epoch over all
    ranks. A batch step s covers positions [s*B*W, (s+1)*B*W) on all ranks together, so the ranks agree
    on the step count; the last step may give a rank fewer rows, or none.

    With `group_rows` (a step's rows on all ranks), the shuffled order of each part is regrouped so that
    a step's rows have similar lengths: every window of GROUP_WINDOW steps is sorted by length, cut into
    steps, and the steps are shuffled within the window. Padding, most of a step's cost on CPU, shrinks;
    each row is still seen once per epoch, and the order is still a pure function of (seed, epoch).

    `epoch` and `consumed` (rows of this rank's share already taken this epoch) are the resumable state.
    """

    def __init__(self, part_sizes: list[int], *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, group_rows: int = 0):
        if not 0 <= rank < world_size:
            raise DistillError(f"rank {rank} is outside a world of {world_size}")
        self.part_sizes = list(part_sizes)
        self.num_rows = sum(self.part_sizes)
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.group_rows = group_rows if shuffle else 0
        self.epoch = 0
        self.consumed = 0
        self._permutation: tuple[int, int, object] | None = None  # (epoch, part, rows in shuffled order)
        self._layout: tuple[int, list[int], object] | None = None  # (epoch, part order, cumulative ends)

    @property
    def rows_per_epoch(self) -> int:
        """Rows this rank sees in one epoch."""
        return len(range(self.rank, self.num_rows, self.world_size))

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batch steps in one epoch, the same on every rank."""
        return -(-self.num_rows // (batch_size * self.world_size))

    def part_order(self, epoch: int) -> list[int]:
        import random

        order = list(range(len(self.part_sizes)))
        if self.shuffle:
            random.Random(f"zhkd-parts:{self.seed}:{epoch}").shuffle(order)
        return order

    def _rows_of_part(self, epoch: int, part: int):
        import numpy as np

        if self._permutation is None or self._permutation[:2] != (epoch, part):
            size = self.part_sizes[part]
            rows = (np.random.default_rng([self.seed, epoch, part]).permutation(size) if self.shuffle
                    else np.arange(size))
            if self.group_rows:
                rows = self._grouped(rows, self.part_lengths(part), np.random.default_rng([self.seed, epoch, part, 1]))
            self._permutation = (epoch, part, rows)
        return self._permutation[2]

    def _grouped(self, rows, lengths, rng):
        import numpy as np

        window, step = self.group_rows * GROUP_WINDOW, self.group_rows
        out = []
        for start in range(0, len(rows), window):
            chunk = rows[start:start + window]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            full = len(chunk) // step * step  # a part's last, short step stays last
            steps = chunk[:full].reshape(-1, step)[rng.permutation(full // step)]
            out += [steps.reshape(-1), chunk[full:]]
        return np.concatenate(out) if out else rows

    def part_lengths(self, part: int):
        """Lengths of a part's rows (any unit that orders them like their piece counts); needed by group_rows."""
        raise NotImplementedError(f"{type(self).__name__} cannot group rows by length")

    def locate(self, epoch: int, start: int, stop: int) -> list[tuple[int, object]]:
        """This rank's rows [start, stop) of an epoch as (part, row indices) runs, in order."""
        import numpy as np

        positions = np.arange(start, min(stop, self.rows_per_epoch), dtype=np.int64) * self.world_size + self.rank
        if self._layout is None or self._layout[0] != epoch:
            order = self.part_order(epoch)
            self._layout = (epoch, order, np.cumsum([self.part_sizes[p] for p in order]))
        _, order, ends = self._layout
        slots = np.searchsorted(ends, positions, side="right")
        runs = []
        for slot in np.unique(slots):
            within = positions[slots == slot] - (ends[slot] - self.part_sizes[order[slot]])
            part = order[int(slot)]
            runs.append((part, self._rows_of_part(epoch, part)[within]))
        return runs

    def step_range(self, step: int, batch_size: int) -> tuple[int, int]:
        """This rank's rows of batch step `step`: [step*B, (step+1)*B) of its share, clipped."""
        return min(step * batch_size, self.rows_per_epoch), min((step + 1) * batch_size, self.rows_per_epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "shuffle": self.shuffle,
                "rank": self.rank, "world_size": self.world_size, "num_rows": self.num_rows,
                "group_rows": self.group_rows}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "shuffle", "world_size", "num_rows", "group_rows"):
            saved = state.get(key, 0)  # checkpoints from before grouping existed have no group_rows
            if saved != getattr(self, key):
                raise DistillError(f"cannot resume: the saved {key} is {saved!r}, this run has {getattr(self, key)!r}")
        if not 0 <= state["consumed"] <= self.rows_per_epoch:
            raise DistillError(f"cannot resume: {state['consumed']} rows consumed of an epoch of {self.rows_per_epoch}")
        self.epoch, self.consumed = state["epoch"], state["consumed"]


class ShardReader(EpochOrder):
    """A validated soft-label dataset, read from memory-mapped Arrow streams in a seeded block shuffle.

    The directory is validated first (COMPLETED, manifest, checksums, schema). Each shard is cut into
    blocks of `block_rows` consecutive rows; an epoch visits the blocks of all shards in a shuffled
    order and the rows of each block in a shuffled order. Rows inside a shard are sorted by their
    hashed id, so a block is already a random sample of its shard. Only the current block's columns
    are copied out of the memory map (two blocks and two shard maps at most), so memory stays flat
    however large the dataset. Iterating yields row dicts from the saved position to the end of the
    epoch, then moves to the next epoch. Picklable for DataLoader workers (maps are reopened there).
    """

    def __init__(self, path: str | Path, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, columns: list[str] | None = None, check_checksums: bool = True,
                 block_rows: int = 8192, group_rows: int = 0):
        self.path = Path(path)
        self.manifest = validate(self.path, check_checksums=check_checksums)
        self.task: str = self.manifest["task"]
        self.label_names: list[str] = self.manifest["label_names"]
        self.files = [s["file"] for s in self.manifest["shards"]]
        full = schema_for(self.task, label_names=self.label_names)
        unknown = sorted(set(columns or ()) - set(full.names))
        if unknown:
            raise DatasetError(f"{self.path}: no column {', '.join(unknown)} in a {self.task} dataset")
        self.columns = list(columns) if columns else full.names
        self.schema = pa.schema([full.field(name) for name in self.columns])
        sizes = [s["rows"] for s in self.manifest["shards"]]
        self.blocks = [(shard, start) for shard, rows in enumerate(sizes) for start in range(0, rows, block_rows)]
        self._maps: dict[int, pa.Table] = {}  # shard -> its zero-copy table over the memory map
        self._block_tables: dict[int, pa.Table] = {}  # block -> its rows, copied out of the map
        super().__init__([min(block_rows, sizes[shard] - start) for shard, start in self.blocks], seed=seed,
                         shuffle=shuffle, rank=rank, world_size=world_size, group_rows=group_rows)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}, "_block_tables": {}, "_permutation": None, "_layout": None}

    @staticmethod
    def _remember(cache: dict, key: int, value):
        if len(cache) >= 2:
            cache.pop(next(iter(cache)))
        cache[key] = value
        return value

    def _block(self, part: int) -> pa.Table:
        if part in self._block_tables:
            return self._block_tables[part]
        shard, start = self.blocks[part]
        if shard not in self._maps:
            with pa.memory_map(str(self.path / self.files[shard])) as source:
                self._remember(self._maps, shard, pa.ipc.open_stream(source).read_all().select(self.columns))
        # One contiguous copy of the block: a take over a chunked table would copy the whole shard per call.
        block = self._maps[shard].slice(start, self.part_sizes[part]).combine_chunks()
        return self._remember(self._block_tables, part, block)

    def part_lengths(self, part: int):
        """Pieces per row from the stored ids; characters when the reader reads text instead."""
        import pyarrow.compute as pc

        block = self._block(part)
        if "input_ids" in block.column_names:
            return pc.list_value_length(block.column("input_ids")).to_numpy(zero_copy_only=False)
        if "tokens" in block.column_names:
            return pc.list_value_length(block.column("tokens")).to_numpy(zero_copy_only=False)
        lengths = pc.utf8_length(block.column("text")).fill_null(0)
        if "text_pair" in block.column_names:
            lengths = pc.add(lengths, pc.utf8_length(block.column("text_pair")).fill_null(0))
        return lengths.to_numpy(zero_copy_only=False)

    def take(self, epoch: int, start: int, stop: int) -> pa.Table:
        """This rank's rows [start, stop) of an epoch's order, as one Arrow table."""
        tables = [self._block(part).take(pa.array(rows)) for part, rows in self.locate(epoch, start, stop)]
        if not tables:
            return self.schema.empty_table()
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def batch(self, epoch: int, step: int, batch_size: int) -> pa.Table:
        return self.take(epoch, *self.step_range(step, batch_size))

    def __iter__(self):
        chunk = 256
        while self.consumed < self.rows_per_epoch:
            start = self.consumed
            rows = self.take(self.epoch, start, start + chunk).to_pylist()
            for i, row in enumerate(rows):
                self.consumed = start + i + 1
                yield row
        self.epoch, self.consumed = self.epoch + 1, 0
