"""Gold rows: the one reader and checker of the task files every command takes.

`zhkd augment`, `zhkd build` (on its workers), and `finetune` / `distill` / `evaluate` (through
`zhkd.distill.predict.read_task_rows`) read rows here, so a row means the same thing to all of them:

- Reading is strict. A line is read with a bounded `readline`, so a line over `MAX_LINE_BYTES` is
  rejected (`line_too_long`) without ever being held whole; bytes that are not UTF-8 reject their row
  (`invalid_utf8`, shown as \\xNN escapes), never decoded with U+FFFD in their place. An empty file, or
  a CSV/TSV with a header and no row, is the user's mistake (`InputError`), not an empty dataset.
- Checking reads the task table: which fields a row has comes from the spec's `fields`, how it is
  labelled from its `label_kind`, one checker per label kind in `LABEL_CHECKERS` (a new kind registers
  one with `register_label_kind`): one label per row, one tag per token, or a set of labels per row
  (multilabel: a list, empty when none applies). Text is NFC-normalised, control characters stripped (and noted),
  outer whitespace trimmed; labels are names, or integer indices into the label names.

Every rejected row keeps its reason from `REASONS`, its source, its line and its raw text: the build
writes it to the dead letter, augment to its rejected file, and the trainer's reader refuses the file
naming `file:line`. Pure Python (the rows of a file come through any binary file object, so Beam's
filesystems and gzip work unchanged).
"""

from __future__ import annotations

import csv
import gzip
import json
import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from zhkd.augment.example import Example
from zhkd.augment.ids import content_id, stable_id
from zhkd.errors import InputError
from zhkd.tasks import MULTILABEL, SEQUENCE, TOKEN, get_task

MAX_LINE_BYTES = 1 << 20  # a longer line is rejected unread: no gold row comes near a megabyte
SHOWN_BYTES = 200  # of an over-long line, the dead letter keeps this much
BLANK = "blank"  # a RawRecord.error for an empty line: counted, not a row
TEXT_FORMATS = ("jsonl", "csv", "tsv")
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
              ".parquet": "parquet"}
REASONS = (
    "malformed_json", "malformed_csv", "malformed_row", "invalid_utf8", "line_too_long", "missing_field",
    "empty_text", "text_too_long", "unknown_label", "missing_label", "length_mismatch", "invalid_bio",
    "duplicate_id",
)
# C0/C1 controls except tab and line breaks, and the invisible BOM / zero-width space.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u200b]")
_BIO = re.compile(r"^(O|[BI]-.+)$")
_DIGITS = re.compile(r"^\d+$")
_BOM = b"\xef\xbb\xbf"
# What a reader's rejection means, for the detail of its dead letter.
READ_ERRORS = {
    "invalid_utf8": "a JSON \\u escape of a lone surrogate (no character), or bytes that are not UTF-8",
    "malformed_json": "not a JSON object",
    "malformed_csv": "not a row of the header's columns",
    "line_too_long": f"a line over {MAX_LINE_BYTES:,} bytes (not read)",
}


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRecord:
    source: str  # the file's base name, or the dataset's name and split
    position: int  # 1-based line of a text file, 0-based row of Parquet or a dataset
    raw: str
    fields: dict | None = None
    error: str | None = None  # the reason of a row that could not be parsed


def format_of(path: str, requested: str = "auto") -> str:
    """The format the user asked for, else the one the extension names (`.gz` looked through)."""
    if requested != "auto":
        return requested
    name = path[:-3] if path.endswith(".gz") else path
    ext = posixpath.splitext(name)[1].lower()
    if ext not in EXTENSIONS:
        raise InputError(f"{path}: cannot tell the format from the extension (one of {', '.join(EXTENSIONS)}); "
                         "pass --input-format")
    return EXTENSIONS[ext]


def shown(raw: bytes) -> str:
    """Bytes as text for a dead letter: invalid UTF-8 as \\xNN escapes."""
    return raw.decode("utf-8", "backslashreplace")


def lines(f: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, the line without its ending, whether it was over `max_bytes`), memory bounded.

    An over-long line comes back as its first `SHOWN_BYTES` only: the rest is read in bounded chunks and
    dropped, so a gigabyte line costs no more memory than a short one. A UTF-8 BOM on line 1 goes.
    """
    number = 0
    while True:
        chunk = f.readline(max_bytes + 1)
        if not chunk:
            return
        number += 1
        if number == 1:
            chunk = chunk.removeprefix(_BOM)
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            head, rest = chunk[:SHOWN_BYTES], chunk
            while rest and not rest.endswith(b"\n"):
                rest = f.readline(max_bytes)
            yield number, head, True
            continue
        yield number, chunk.rstrip(b"\r\n"), False


def read_jsonl(f: BinaryIO, source: str, max_bytes: int = MAX_LINE_BYTES) -> Iterator[RawRecord]:
    """One record per line: a JSON object, or the reason it is not one."""
    for number, line, too_long in lines(f, max_bytes):
        if too_long:
            yield RawRecord(source, number, shown(line) + "...", error="line_too_long")
            continue
        if not line.strip():
            yield RawRecord(source, number, "", error=BLANK)
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            yield RawRecord(source, number, shown(line), error="invalid_utf8")
            continue
        try:
            fields = json.loads(text)
        except json.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict):
            yield RawRecord(source, number, text, error="malformed_json")
            continue
        if ("\\ud" in text or "\\uD" in text) and not _unicode(fields):  # JSON writes the escape's u in lower case
            yield RawRecord(source, number, text, error="invalid_utf8")
            continue
        yield RawRecord(source, number, text, fields)


def _unicode(fields: dict) -> bool:
    """Whether a parsed JSON object holds only characters. JSON may escape half of a surrogate pair
    (`"\\ud800"`), which Python decodes into a string that no UTF-8 output, hash or tokenizer takes."""
    try:
        json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Lines:
    """Decoded lines fed to the csv reader, remembering which lines the current record took.

    Invalid bytes decode with surrogateescape so the row, not the file, is rejected; an over-long line
    reaches the csv reader as an empty line and is flagged in `too_long`.
    """

    def __init__(self, f: BinaryIO, max_bytes: int) -> None:
        self._lines = lines(f, max_bytes)
        self.number = 0
        self.taken: list[str] = []
        self.too_long = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        self.number, line, too_long = next(self._lines)
        if too_long:
            self.too_long = True
            self.taken.append(shown(line) + "...")
            return "\n"
        text = line.decode("utf-8", "surrogateescape") + "\n"
        self.taken.append(text)
        return text


def _has_invalid_bytes(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def read_delimited(f: BinaryIO, source: str, kind: str, max_bytes: int = MAX_LINE_BYTES) -> Iterator[RawRecord]:
    """CSV (quoted fields may span lines) or TSV (no quoting) with a header row naming the fields.

    A file without a header, or with nothing after it, raises InputError: it holds no row to reject.
    """
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if kind == "tsv" else {"delimiter": ","}
    text = _Lines(f, max_bytes)
    reader = csv.reader(text, strict=True, **dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{source}: empty file (a {kind.upper()} file needs a header row)") from None
    except csv.Error as err:
        raise InputError(f"{source}:1: the header row is not valid {kind.upper()} ({err})") from None
    if text.too_long or _has_invalid_bytes("".join(text.taken)) or not any(h.strip() for h in header):
        raise InputError(f"{source}:1: the header row is over-long, not UTF-8 or empty")
    rows = 0
    while True:
        start, text.taken, text.too_long = text.number + 1, [], False
        try:
            cells = next(reader)
            error = None
        except StopIteration:
            break
        except csv.Error:
            cells, error = None, "malformed_csv"
        raw = "".join(text.taken).rstrip("\r\n")
        visible = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        rows += 1
        if text.too_long:
            yield RawRecord(source, start, visible, error="line_too_long")
        elif cells is not None and not any(c.strip() for c in cells):
            rows -= 1
            yield RawRecord(source, start, "", error=BLANK)
        elif error is None and len(cells) != len(header):
            yield RawRecord(source, start, visible, error="malformed_csv")
        elif error is None and _has_invalid_bytes(raw):
            yield RawRecord(source, start, visible, error="invalid_utf8")
        elif error is not None:
            yield RawRecord(source, start, visible, error=error)
        else:
            yield RawRecord(source, start, raw, dict(zip(header, cells, strict=True)))
    if not rows:
        raise InputError(f"{source}: a header row and no rows under it")


def read_records(f: BinaryIO, source: str, kind: str, max_bytes: int = MAX_LINE_BYTES) -> Iterator[RawRecord]:
    """The records of a text file of format `kind` (jsonl, csv or tsv)."""
    if kind == "jsonl":
        return read_jsonl(f, source, max_bytes)
    if kind in ("csv", "tsv"):
        return read_delimited(f, source, kind, max_bytes)
    raise InputError(f"{source}: {kind} is not a text format ({', '.join(TEXT_FORMATS)})")


def open_binary(path: Path) -> BinaryIO:
    """A local file for reading bytes; `.gz` decompressed on the fly."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115 (returned)


def read_file(path: str | Path, requested: str = "auto") -> Iterator[RawRecord]:
    """The records of a local task file; a missing or empty one raises InputError naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    kind = format_of(str(path), requested)
    if kind not in TEXT_FORMATS:
        raise InputError(f"{path}: {kind} rows are read by zhkd build only; give a .jsonl, .csv or .tsv file")
    with open_binary(path) as f:
        try:
            empty = not f.peek(1) if hasattr(f, "peek") else path.stat().st_size == 0
        except (OSError, EOFError) as err:
            raise InputError(f"{path}: cannot be read ({err})") from None
        if empty:
            raise InputError(f"{path}: empty file")
        try:
            yield from read_records(f, str(path), kind)
        except (OSError, EOFError) as err:  # a truncated or corrupt .gz
            raise InputError(f"{path}: cannot be read ({err})") from None


# --- checking --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """Which input column holds each part of an example."""

    text: str = "text"
    text_pair: str = "text_pair"
    label: str = "label"
    labels: str = "labels"
    tokens: str = "tokens"
    tags: str = "tags"
    id: str = "id"

    def label_column(self, task: str) -> str:
        """The column of the task's gold labels (the spec's `label_field`, mapped)."""
        field = get_task(task).label_field
        return getattr(self, field, field)


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    source: str
    position: int
    raw: str
    detail: str = ""

    def to_json(self) -> dict:
        return {"reason": self.reason, "source": self.source, "position": self.position,
                "detail": self.detail, "raw": self.raw}


@dataclass(frozen=True)
class Checked:
    """The outcome for one record: an example or a dead letter, and notes to count."""

    example: Example | None = None
    dead: DeadLetter | None = None
    notes: tuple[str, ...] = ()


class Reject(Exception):
    """Raised by a checker: the row is rejected with this reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def infer_label_names(values: Iterable) -> list[str]:
    """Label names from the values seen: sorted names, or "0".."max" when every value is an index."""
    seen = {v for v in values if v is not None and v != "" and not isinstance(v, bool)}
    if seen and all(isinstance(v, int) or isinstance(v, str) and _DIGITS.match(v) for v in seen):
        return [str(i) for i in range(max(int(v) for v in seen) + 1)]
    return sorted(str(v) for v in seen)


def label_values(task: str, fields_map: Fields, record: RawRecord) -> list:
    """The label values of a record (every tag of a token-labelled row, the set of a multilabel row), for
    inferring the label names; what is not a name or an index is left to the checker to reject."""
    if record.fields is None:
        return []
    value = record.fields.get(fields_map.label_column(task))
    if get_task(task).label_kind == SEQUENCE:
        return [value] if isinstance(value, str | int) else []
    return [v for v in value if isinstance(v, str | int)] if isinstance(value, list | tuple) else []


def _clean(text: str) -> tuple[str, bool]:
    text = unicodedata.normalize("NFC", text)
    stripped = _CONTROL.sub("", text)
    return stripped, stripped != text


def _present(value) -> bool:
    return value is not None and value != ""


class Validator:
    """Checks records of one task; cheap to pickle.

    `label_names` None checks labels for their type only and keeps them as given (augment, which passes
    labels through); a list maps them to ids. `max_chars` None sets no length cap.
    """

    def __init__(self, task: str, fields: Fields, label_names: list[str] | None, *, max_chars: int | None,
                 truncate: bool = False, allow_unlabeled: bool = False) -> None:
        self.task, self.fields = task, fields
        self.label_names = None if label_names is None else list(label_names)
        self.index = {name: i for i, name in enumerate(self.label_names or ())}
        self.max_chars, self.truncate, self.allow_unlabeled = max_chars, truncate, allow_unlabeled

    def check(self, record: RawRecord) -> Checked:
        if record.error is not None:
            return Checked(dead=DeadLetter(record.error, record.source, record.position, record.raw,
                                           READ_ERRORS.get(record.error, "")))
        notes: list[str] = []
        kind = get_task(self.task).label_kind
        if kind not in LABEL_CHECKERS:
            raise InputError(f"task {self.task}: no row checker for label kind {kind!r}")
        try:
            example = LABEL_CHECKERS[kind](self, record, notes)
        except Reject as reject:
            return Checked(dead=DeadLetter(reject.reason, record.source, record.position, record.raw,
                                           reject.detail))
        return Checked(example=example, notes=tuple(dict.fromkeys(notes)))

    # -- parts every label kind uses --------------------------------------------------------------------
    def text(self, fields: dict, name: str, notes: list[str]) -> str:
        """A text field: present, a string, visible after cleaning, within the cap (or cut to it)."""
        if name not in fields:
            raise Reject("missing_field", f"no field {name!r}")
        value = fields[name]
        if value is None:
            raise Reject("empty_text", f"{name} is null")
        if not isinstance(value, str):
            raise Reject("malformed_row", f"{name} is a {type(value).__name__}, not a string")
        text, stripped = _clean(value)
        if stripped:
            notes.append("control_chars_stripped")
        text = text.strip()
        if not text:
            raise Reject("empty_text", f"{name} is empty or whitespace")
        if self.max_chars is not None and len(text) > self.max_chars:
            if not self.truncate:
                raise Reject("text_too_long", f"{name} has {len(text)} characters, the cap is {self.max_chars}")
            text = text[: self.max_chars]
            notes.append("truncated")
        return text

    def texts(self, fields: dict, notes: list[str]) -> tuple[str, str | None]:
        """The spec's text fields (the second, when there is one, is the pair)."""
        spec = get_task(self.task)
        names = [getattr(self.fields, f, f) for f in spec.fields]
        text = self.text(fields, names[0], notes)
        pair = self.text(fields, names[1], notes) if spec.has_pair else None
        return text, pair

    def label(self, value) -> int | str:
        """One label: its id among the names (a name, or an integer index), or as given without names."""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise Reject("malformed_row", f"label {value!r} is neither a name nor an integer index")
        if self.label_names is None:
            return value
        if isinstance(value, str) and value in self.index:
            return self.index[value]
        is_index = isinstance(value, int) or _DIGITS.match(value)
        if is_index and 0 <= int(value) < len(self.label_names):
            return int(value)
        raise Reject("unknown_label", f"label {value!r} is not one of {self.label_names}")

    def gold(self, fields: dict):
        """The raw gold value, or None for an unlabelled row that is allowed."""
        column = self.fields.label_column(self.task)
        value = fields.get(column)
        if not _present(value):
            if not self.allow_unlabeled:
                raise Reject("missing_label", f"no {column!r} (pass --allow-unlabeled to keep it)")
            return None
        return value

    def make_id(self, record: RawRecord, content: dict) -> str:
        given = record.fields.get(self.fields.id)
        if _present(given) and isinstance(given, str | int) and not isinstance(given, bool):
            return str(given)
        # Content and position: the same row at the same place always gets the same id.
        return "row-" + stable_id(record.source, str(record.position), content_id(content))

    # -- one label per row ------------------------------------------------------------------------------
    def sequence(self, record: RawRecord, notes: list[str]) -> Example:
        text, pair = self.texts(record.fields, notes)
        value = self.gold(record.fields)
        label = None if value is None else self.label(value)
        content = {"text": text, "text_pair": pair, "label": label}
        return Example(self.make_id(record, content), text, pair, label)

    # -- any subset of the labels per row ---------------------------------------------------------------
    def multilabel(self, record: RawRecord, notes: list[str]) -> Example:
        """A text and the set of labels that apply to it: a list, empty when none does (still labelled).

        With label names the set becomes sorted ids; without (augment) the labels stay as given, in order.
        """
        text, _ = self.texts(record.fields, notes)
        value = self.gold(record.fields)
        labels = None
        if value is not None:
            column = self.fields.label_column(self.task)
            if not isinstance(value, list | tuple):
                raise Reject("malformed_row", f"{column} must be a list of labels (empty when none applies)")
            ids = [self.label(v) for v in value]
            if len({str(i) for i in ids}) != len(ids):
                raise Reject("malformed_row", f"{column} names a label twice")
            labels = tuple(sorted(ids)) if self.label_names is not None else tuple(ids)
        content = {"text": text, "labels": None if labels is None else list(labels)}
        return Example(self.make_id(record, content), text, None, labels)

    # -- one tag per token ------------------------------------------------------------------------------
    def _tokens(self, fields: dict) -> list[str]:
        tokens = fields.get(self.fields.tokens)
        if tokens is None:
            text = fields.get(self.fields.text)
            if text is None:
                raise Reject("missing_field", f"no field {self.fields.tokens!r} or {self.fields.text!r}")
            if not isinstance(text, str):
                raise Reject("malformed_row", f"{self.fields.text} is a {type(text).__name__}, not a string")
            return list(text.strip())
        if not isinstance(tokens, list | tuple) or not all(isinstance(t, str) for t in tokens):
            raise Reject("malformed_row", f"{self.fields.tokens} must be a list of strings")
        return list(tokens)

    def _tags(self, value) -> list[str]:
        if not isinstance(value, list | tuple):
            raise Reject("malformed_row", f"{self.fields.tags} must be a list")
        tags = []
        for tag in value:
            if isinstance(tag, int) and not isinstance(tag, bool):
                if self.label_names is None or not 0 <= tag < len(self.label_names):
                    raise Reject("unknown_label", f"tag index {tag} is outside the {len(self.index)} tags")
                tag = self.label_names[tag]
            if not isinstance(tag, str) or not _BIO.match(tag):
                raise Reject("invalid_bio", f"tag {tag!r} is not O, B-X or I-X")
            tags.append(tag)
        for prev, tag in zip(["O", *tags], tags, strict=False):
            if tag.startswith("I-") and prev[2:] != tag[2:]:
                raise Reject("invalid_bio", f"{tag} follows {prev}")
        unknown = sorted({t for t in tags if t not in self.index}) if self.label_names is not None else []
        if unknown:
            raise Reject("unknown_label", f"tags {unknown} are not among {self.label_names}")
        return tags

    def token(self, record: RawRecord, notes: list[str]) -> Example:
        fields = record.fields
        tokens = self._tokens(fields)
        value = self.gold(fields)
        tags = None
        if value is not None:
            tags = self._tags(value)
            if len(tags) != len(tokens):
                raise Reject("length_mismatch", f"{len(tokens)} tokens but {len(tags)} tags")
        kept_tokens, kept_tags = [], []
        for i, token in enumerate(tokens):
            cleaned, stripped = _clean(token)
            if stripped:
                notes.append("control_chars_stripped")
            if cleaned:  # a token that was only control characters goes, with its tag
                kept_tokens.append(cleaned)
                kept_tags.append(None if tags is None else tags[i])
        if not "".join(kept_tokens).strip():
            raise Reject("empty_text", "no visible token")
        total = sum(map(len, kept_tokens))
        if self.max_chars is not None and total > self.max_chars:
            if not self.truncate:
                raise Reject("text_too_long", f"{total} characters, the cap is {self.max_chars}")
            used, cut = 0, 0
            while cut < len(kept_tokens) and used + len(kept_tokens[cut]) <= self.max_chars:
                used += len(kept_tokens[cut])
                cut += 1
            kept_tokens, kept_tags = kept_tokens[:cut], kept_tags[:cut]
            notes.append("truncated")
        final_tags = None if tags is None else tuple(kept_tags)
        content = {"tokens": kept_tokens, "tags": None if final_tags is None else list(final_tags)}
        return Example(self.make_id(record, content), "".join(kept_tokens), None, None, tuple(kept_tokens),
                       final_tags)


LabelChecker = Callable[[Validator, RawRecord, list], Example]
LABEL_CHECKERS: dict[str, LabelChecker] = {}


def register_label_kind(kind: str, checker: LabelChecker) -> None:
    """The row checker of a label kind (the task table's `label_kind`): fields, label, id, one Example."""
    LABEL_CHECKERS[kind] = checker


register_label_kind(SEQUENCE, Validator.sequence)
register_label_kind(TOKEN, Validator.token)
register_label_kind(MULTILABEL, Validator.multilabel)
