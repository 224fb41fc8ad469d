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
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from zhkd.errors import ZhkdError
from zhkd.outputs import fsync_dir, fsync_file
from zhkd.tasks import get_task

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
COMPLETED = "COMPLETED"
META_PREFIX = "zhkd."


class DatasetError(ZhkdError):
    """A dataset directory is partial, corrupted or not of this format; the message names the file."""


def schema_for(task: str, *, label_names: list[str], metadata: dict[str, str] | None = None) -> pa.Schema:
    """The column layout of a task; `metadata` (teacher, tokenizer, config hash) goes in the schema."""
    spec = get_task(task)
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
    if spec.per_token:
        fields.append(pa.field("tokens", pa.list_(pa.string()), nullable=False))
    else:
        fields.append(pa.field("text_pair", pa.string()))
    # The gold column, null for unlabelled rows: a label id, or a list (tags per token, a multilabel set).
    fields.append(pa.field(spec.label_field, pa.list_(pa.int32()) if spec.gold_is_list else pa.int32()))
    fields += [
        pa.field("is_original", pa.bool_(), nullable=False),
        pa.field("ops", pa.list_(pa.string()), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
    ]
    if spec.per_token:
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


BATCH_ROWS = 1000  # rows per Arrow record batch in a shard


def write_shard(rows: list[dict], path: Path, schema: pa.Schema, batch_rows: int = BATCH_ROWS) -> ShardInfo:
    """Rows sorted by id, as one Arrow stream, written under a temporary name and renamed."""
    return write_sorted_shard(sorted(rows, key=lambda r: r["id"]), path, schema, batch_rows)


def write_sorted_shard(rows: Iterable[dict], path: Path, schema: pa.Schema, batch_rows: int = BATCH_ROWS) -> ShardInfo:
    """Rows that arrive in strictly increasing id order, streamed into one Arrow stream in record
    batches of `batch_rows` (so a shard never has to fit in memory), under a temporary name, renamed.
    The batch layout depends on the rows alone, so the bytes do too. An id out of order or repeated
    stops the write: a shard must hold each row once, sorted."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count, previous, batch = 0, None, []
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for row in rows:
                if previous is not None and row["id"] <= previous:
                    raise DatasetError(f"{path}: row id {row['id']!r} after {previous!r} (rows must come sorted, "
                                       "each once)")
                previous = row["id"]
                batch.append(row)
                if len(batch) == batch_rows:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                    count, batch = count + len(batch), []
            if batch or not count:  # an empty shard still holds one (empty) batch: datasets needs one
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                count += len(batch)
        fsync_file(tmp)  # on disk before any manifest or COMPLETED can name it
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ShardInfo(path.name, count, path.stat().st_size, file_sha256(path))


def read_rows(path: Path, slice_rows: int = 16) -> Iterator[dict]:
    """The rows of one shard (or sorted run) in order, holding one Arrow record batch and `slice_rows`
    Python rows at a time (a merge of many runs keeps one of these per run)."""
    with pa.OSFile(str(path), "rb") as source:
        for batch in pa.ipc.open_stream(source):
            for start in range(0, batch.num_rows, slice_rows):
                yield from batch.slice(start, slice_rows).to_pylist()


def _feature(arrow_type: pa.DataType) -> dict:
    """The `datasets` feature description of one of the format's Arrow types."""
    if pa.types.is_list(arrow_type):
        return {"feature": _feature(arrow_type.value_type), "_type": "List"}
    dtype = {pa.string(): "string", pa.bool_(): "bool", pa.int32(): "int32", pa.float32(): "float32"}[arrow_type]
    return {"dtype": dtype, "_type": "Value"}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    fsync_file(tmp)
    os.replace(tmp, path)


def finalize(out_dir: Path, schema: pa.Schema, shards: list[ShardInfo], manifest: dict) -> dict:
    """Write the `datasets` state files and the manifest, then `COMPLETED` last, each fsynced first.

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
    fsync_dir(out_dir)  # shards (fsynced when written), state files and manifest durable before COMPLETED
    (out_dir / COMPLETED).write_text(full.get("config_hash", "") + "\n", encoding="utf-8")
    fsync_file(out_dir / COMPLETED)
    fsync_dir(out_dir)
    return full


def read_manifest(out_dir: Path) -> dict:
    """The manifest of a complete dataset; refuses a partial directory."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: no such dataset directory")
    if not (out_dir / COMPLETED).exists():
        raise DatasetError(f"{out_dir / COMPLETED}: missing; the build did not finish, so this is not a dataset")
    path = out_dir / MANIFEST
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: missing") from err
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path}: not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: format version {manifest.get('format_version')!r}, "
                           f"this zhkd reads {FORMAT_VERSION}")
    _check_manifest(path, manifest)
    return manifest


def _check_manifest(path: Path, manifest: dict) -> None:
    """The fields a reader relies on, with their types; shard names must be plain names inside the dataset."""
    from zhkd.tasks import TASKS

    if manifest.get("task") not in TASKS:
        raise DatasetError(f"{path}: task {manifest.get('task')!r} is not one of {', '.join(TASKS)}")
    names = manifest.get("label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{path}: label_names must be a non-empty list of strings")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise DatasetError(f"{path}: shards must be a non-empty list")
    for shard in shards:
        if (not isinstance(shard, dict) or not {"file", "rows", "bytes", "sha256"} <= set(shard)
                or not isinstance(shard["file"], str) or Path(shard["file"]).name != shard["file"]
                or not all(isinstance(shard[k], int) for k in ("rows", "bytes"))):
            raise DatasetError(f"{path}: a shard entry must be {{file, rows, bytes, sha256}} with a plain file name "
                               f"({json.dumps(shard)[:80]})")


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
