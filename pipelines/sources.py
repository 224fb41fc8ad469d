"""Input sources: JSONL, CSV/TSV and Parquet files on any Beam filesystem, and Hugging Face datasets.

The driver expands the user's inputs into read units (one per file, or a row range of a dataset);
workers read each unit into `RawRecord`s. A record keeps the row as it was read, so a rejected row
reaches the dead letter unchanged, and its position (line number, or row index), which with its
content gives an example without an `id` field its stable id.
"""

from __future__ import annotations

import csv
import functools
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from zhkd.pipelines.errors import PipelineError

HF_PREFIX = "hf:"
HF_RANGE_ROWS = 20_000
BLANK = "blank"  # a RawRecord.error for an empty line: counted, not a row
_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
               ".parquet": "parquet"}


@dataclass(frozen=True)
class ReadUnit:
    kind: str  # jsonl, csv, tsv, parquet, hf_disk, hf_hub
    path: str
    identity: str  # size in bytes of a file, the fingerprint of a dataset: goes into the config hash
    start: int = 0
    stop: int | None = None
    split: str | None = None


@dataclass(frozen=True)
class RawRecord:
    source: str  # the file's base name, or the dataset's name and split
    position: int  # 1-based line of a text file, 0-based row of Parquet or a dataset
    raw: str
    fields: dict | None = None
    error: str | None = None  # the dead-letter reason of a row that could not be parsed


def _format_of(path: str, requested: str) -> str:
    if requested != "auto":
        return requested
    name = path[:-3] if path.endswith(".gz") else path
    ext = posixpath.splitext(name)[1].lower()
    if ext not in _EXTENSIONS:
        raise PipelineError(f"{path}: cannot tell the format from the extension; pass --input-format")
    return _EXTENSIONS[ext]


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
        units += [ReadUnit(_format_of(m.path, input_format), m.path, str(m.size_in_bytes)) for m in matched]
    if not units:
        raise PipelineError("no input given")
    return units


def read_unit(unit: ReadUnit) -> Iterator[RawRecord]:
    readers = {"jsonl": _read_jsonl, "csv": _read_delimited, "tsv": _read_delimited, "parquet": _read_parquet,
               "hf_disk": _read_dataset, "hf_hub": _read_dataset}
    yield from readers[unit.kind](unit)


def _visible(raw: bytes) -> str:
    """Bytes as text for the dead letter: invalid UTF-8 shown as \\xNN escapes."""
    return raw.decode("utf-8", "backslashreplace")


def _read_jsonl(unit: ReadUnit) -> Iterator[RawRecord]:
    from apache_beam.io.filesystems import FileSystems

    source = posixpath.basename(unit.path)
    with FileSystems.open(unit.path) as f:
        for line_no, line in enumerate(iter(f.readline, b""), 1):
            line = line.rstrip(b"\r\n")
            if line_no == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line.strip():
                yield RawRecord(source, line_no, "", error=BLANK)
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                yield RawRecord(source, line_no, _visible(line), error="invalid_utf8")
                continue
            try:
                fields = json.loads(text)
            except json.JSONDecodeError:
                fields = None
            if not isinstance(fields, dict):
                yield RawRecord(source, line_no, text, error="malformed_json")
                continue
            yield RawRecord(source, line_no, text, fields)


class _Lines:
    """Decoded lines fed to the csv reader, remembering which lines the current record took."""

    def __init__(self, binary_lines) -> None:
        self._lines = iter(binary_lines)
        self.number = 0
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        if self.number == 0:
            line = line.removeprefix(b"\xef\xbb\xbf")
        self.number += 1
        # surrogateescape keeps invalid bytes recoverable, so the row can be rejected rather than the file.
        text = line.decode("utf-8", "surrogateescape")
        self.taken.append(text)
        return text


def _has_invalid_bytes(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def _read_delimited(unit: ReadUnit) -> Iterator[RawRecord]:
    from apache_beam.io.filesystems import FileSystems

    source = posixpath.basename(unit.path)
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if unit.kind == "tsv" else {"delimiter": ","}
    with FileSystems.open(unit.path) as f:
        lines = _Lines(iter(f.readline, b""))
        reader = csv.reader(lines, strict=True, **dialect)
        try:
            header = next(reader)
        except (StopIteration, csv.Error):
            raise PipelineError(f"{unit.path}: no header row") from None
        while True:
            start, lines.taken = lines.number + 1, []
            try:
                cells = next(reader)
                error = None
            except StopIteration:
                return
            except csv.Error:
                cells, error = None, "malformed_csv"
            raw = "".join(lines.taken).rstrip("\r\n")
            shown = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            if cells is not None and not any(c.strip() for c in cells):
                yield RawRecord(source, start, "", error=BLANK)
            elif error is None and len(cells) != len(header):
                yield RawRecord(source, start, shown, error="malformed_csv")
            elif error is None and _has_invalid_bytes(raw):
                yield RawRecord(source, start, shown, error="invalid_utf8")
            elif error is not None:
                yield RawRecord(source, start, shown, error=error)
            else:
                yield RawRecord(source, start, raw, dict(zip(header, cells, strict=True)))


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
