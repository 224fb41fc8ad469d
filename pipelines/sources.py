"""Input sources: JSONL, CSV/TSV and Parquet files on any Beam filesystem, and Hugging Face datasets.

The driver expands the user's inputs into read units (one per file, or a row range of a dataset),
refusing files with no row at all and naming each by its content hash; workers read each unit into
`RawRecord`s (text files through `zhkd.rows`, the reader every command shares). A record keeps the row
as it was read, so a rejected row reaches the dead letter unchanged, and its position (line number, or
row index), which with its content gives an example without an `id` field its stable id.
"""

from __future__ import annotations

import functools
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from zhkd.errors import InputError
from zhkd.pipelines import storage
from zhkd.pipelines.errors import PipelineError
from zhkd.rows import TEXT_FORMATS, RawRecord, format_of, read_records
from zhkd.shards import file_sha256

HF_PREFIX = "hf:"
HF_RANGE_ROWS = 20_000


@dataclass(frozen=True)
class ReadUnit:
    kind: str  # jsonl, csv, tsv, parquet, hf_disk, hf_hub
    path: str
    identity: str  # a file's content hash, a dataset's fingerprint: goes into the config hash
    start: int = 0
    stop: int | None = None
    split: str | None = None


def _is_saved_dataset(path: str) -> bool:
    from apache_beam.io.filesystems import FileSystems

    return any(FileSystems.exists(FileSystems.join(path, name)) for name in ("state.json", "dataset_dict.json"))


@functools.lru_cache(maxsize=4)
def _dataset(kind: str, path: str, split: str):
    """A Hugging Face dataset, memory-mapped, once per process."""
    import datasets

    try:
        if kind == "hf_hub":
            return datasets.load_dataset(path, split=split)
        loaded = datasets.load_from_disk(path)
    except (OSError, ValueError, FileNotFoundError) as err:
        raise PipelineError(f"cannot load the dataset {path}: {err}") from err
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise PipelineError(f"{path}: no split {split!r}; it has {', '.join(loaded)} (pass --split)")
        return loaded[split]
    return loaded


def _dataset_units(kind: str, path: str, split: str) -> list[ReadUnit]:
    ds = _dataset(kind, path, split)
    identity = f"{ds._fingerprint}:{ds.num_rows}"
    return [ReadUnit(kind, path, identity, start, min(start + HF_RANGE_ROWS, ds.num_rows), split)
            for start in range(0, max(ds.num_rows, 1), HF_RANGE_ROWS)]


def expand_inputs(inputs: tuple[str, ...], input_format: str = "auto", split: str = "train") -> list[ReadUnit]:
    """Read units for the user's inputs: globs matched now, so a missing file is an error before the run."""
    from apache_beam.io.filesystems import FileSystems

    units: list[ReadUnit] = []
    for spec in inputs:
        if spec.startswith(HF_PREFIX):
            units += _dataset_units("hf_hub", spec[len(HF_PREFIX):], split)
            continue
        if input_format in ("auto", "hf") and _is_saved_dataset(spec):
            units += _dataset_units("hf_disk", spec, split)
            continue
        if input_format == "hf":
            raise PipelineError(f"{spec}: not a save_to_disk dataset directory (use hf:NAME for a hub dataset)")
        matched = sorted(FileSystems.match([spec])[0].metadata_list, key=lambda m: m.path)
        if not matched:
            raise PipelineError(f"{spec}: no such file (or the pattern matches nothing)")
        for m in matched:
            kind = _format_of(m.path, input_format)
            units.append(ReadUnit(kind, m.path, _checked_identity(m.path, kind)))
    if not units:
        raise PipelineError("no input given")
    return units


def _format_of(path: str, requested: str) -> str:
    try:
        return format_of(path, requested)
    except InputError as err:
        raise PipelineError(str(err)) from None


def _checked_identity(path: str, kind: str) -> str:
    """The file's identity by content (an edit that keeps the size changes it), after refusing a file that
    holds no row at all: empty, or a CSV/TSV header alone (a user's mistake, named before the run)."""
    from apache_beam.io.filesystems import FileSystems

    if kind in TEXT_FORMATS:
        with FileSystems.open(path) as f:
            records = read_records(f, path, kind)
            try:
                next(records)
            except StopIteration:
                raise PipelineError(f"{path}: empty file") from None
            except InputError as err:
                raise PipelineError(str(err)) from None
    if storage.is_local(path):
        return "sha256:" + file_sha256(path.removeprefix("file://"))
    # An object store's own content checksum (GCS: MD5 or CRC32C), read without downloading the object.
    return f"checksum:{FileSystems.checksum(path)}"


def read_unit(unit: ReadUnit) -> Iterator[RawRecord]:
    readers = {"jsonl": _read_text, "csv": _read_text, "tsv": _read_text, "parquet": _read_parquet,
               "hf_disk": _read_dataset, "hf_hub": _read_dataset}
    yield from readers[unit.kind](unit)


def _read_text(unit: ReadUnit) -> Iterator[RawRecord]:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(unit.path) as f:
        yield from read_records(f, posixpath.basename(unit.path), unit.kind)


def _raw_json(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, default=str)


def _read_parquet(unit: ReadUnit) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    source = posixpath.basename(unit.path)
    position = 0
    with FileSystems.open(unit.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                yield RawRecord(source, position, _raw_json(row), row)
                position += 1


def _read_dataset(unit: ReadUnit) -> Iterator[RawRecord]:
    ds = _dataset(unit.kind, unit.path, unit.split)
    source = f"{posixpath.basename(unit.path.rstrip('/'))}:{unit.split}"
    columns = ds[unit.start:unit.stop]
    names = list(columns)
    for offset, values in enumerate(zip(*(columns[n] for n in names), strict=True)):
        row = dict(zip(names, values, strict=True))
        yield RawRecord(source, unit.start + offset, _raw_json(row), row)
