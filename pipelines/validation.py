"""Input validation: a raw record becomes an `Example`, or a dead letter with its reason.

Normalisation is NFC, control characters stripped (and counted), outer whitespace trimmed. Labels
are given as names or as integer indices into the label names (a list of them for a multilabel row).
Nothing is dropped silently: every rejected row carries one of `REASONS` and its raw text to
`OUT/dead_letter/<reason>.jsonl`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from zhkd.augment.example import Example
from zhkd.augment.ids import content_id, stable_id
from zhkd.pipelines.build_config import Fields
from zhkd.pipelines.sources import RawRecord
from zhkd.tasks import MULTILABEL, SEQUENCE, TOKEN, get_task

REASONS = (
    "malformed_json", "malformed_csv", "malformed_row", "invalid_utf8", "missing_field", "empty_text",
    "text_too_long", "unknown_label", "missing_label", "length_mismatch", "invalid_bio", "duplicate_id",
)
# C0/C1 controls except tab and line breaks, and the invisible BOM / zero-width space.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u200b]")
_BIO = re.compile(r"^(O|[BI]-.+)$")
_DIGITS = re.compile(r"^\d+$")


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


class _Reject(Exception):
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
    """The label values of a record (the tags of an NER row, the set of a multilabel row), for inferring
    the label names."""
    if record.fields is None:
        return []
    value = record.fields.get(fields_map.gold(task))
    if get_task(task).gold_is_list:
        return [v for v in value if isinstance(v, str | int)] if isinstance(value, list | tuple) else []
    return [value] if isinstance(value, str | int) else []


def _clean(text: str) -> tuple[str, bool]:
    text = unicodedata.normalize("NFC", text)
    stripped = _CONTROL.sub("", text)
    return stripped, stripped != text


def _present(value) -> bool:
    return value is not None and value != ""


class Validator:
    """Checks records of one task against the label names; cheap to pickle."""

    def __init__(self, task: str, fields: Fields, label_names: list[str], *, max_chars: int,
                 truncate: bool = False, allow_unlabeled: bool = False) -> None:
        self.task, self.fields, self.label_names = task, fields, list(label_names)
        self.index = {name: i for i, name in enumerate(self.label_names)}
        self.max_chars, self.truncate, self.allow_unlabeled = max_chars, truncate, allow_unlabeled

    def check(self, record: RawRecord) -> Checked:
        if record.error is not None:
            return Checked(dead=DeadLetter(record.error, record.source, record.position, record.raw))
        notes: list[str] = []
        parse = {SEQUENCE: self._classification, TOKEN: self._ner, MULTILABEL: self._multilabel}
        try:
            example = parse[get_task(self.task).label_kind](record, notes)
        except _Reject as reject:
            dead = DeadLetter(reject.reason, record.source, record.position, record.raw, reject.detail)
            return Checked(dead=dead)
        return Checked(example=example, notes=tuple(dict.fromkeys(notes)))

    # -- classification and pair ------------------------------------------------------------------
    def _text(self, fields: dict, name: str, notes: list[str]) -> str:
        if name not in fields:
            raise _Reject("missing_field", f"no field {name!r}")
        value = fields[name]
        if value is None:
            raise _Reject("empty_text", f"{name} is null")
        if not isinstance(value, str):
            raise _Reject("malformed_row", f"{name} is a {type(value).__name__}, not a string")
        text, stripped = _clean(value)
        if stripped:
            notes.append("control_chars_stripped")
        text = text.strip()
        if not text:
            raise _Reject("empty_text", f"{name} is empty or whitespace")
        if len(text) > self.max_chars:
            if not self.truncate:
                raise _Reject("text_too_long", f"{name} has {len(text)} characters, the cap is {self.max_chars}")
            text = text[: self.max_chars]
            notes.append("truncated")
        return text

    def _label(self, value) -> int:
        if isinstance(value, str) and value in self.index:
            return self.index[value]
        is_index = (isinstance(value, int) and not isinstance(value, bool)
                    or isinstance(value, str) and _DIGITS.match(value))
        if is_index and 0 <= int(value) < len(self.label_names):
            return int(value)
        raise _Reject("unknown_label", f"label {value!r} is not one of {self.label_names}")

    def _classification(self, record: RawRecord, notes: list[str]) -> Example:
        fields = record.fields
        text = self._text(fields, self.fields.text, notes)
        pair = self._text(fields, self.fields.text_pair, notes) if get_task(self.task).has_pair else None
        value = fields.get(self.fields.label)
        if not _present(value):
            if not self.allow_unlabeled:
                raise _Reject("missing_label", f"no {self.fields.label!r} (pass --allow-unlabeled to keep it)")
            label = None
        else:
            label = self._label(value)
        content = {"text": text, "text_pair": pair, "label": label}
        return Example(self._id(record, content), text, pair, label)

    # -- multilabel -------------------------------------------------------------------------------
    def _multilabel(self, record: RawRecord, notes: list[str]) -> Example:
        """A text and the set of labels that apply to it: a list, empty when none does (still labelled)."""
        fields = record.fields
        text = self._text(fields, self.fields.text, notes)
        value = fields.get(self.fields.labels)
        if value is None:
            if not self.allow_unlabeled:
                raise _Reject("missing_label", f"no {self.fields.labels!r} (pass --allow-unlabeled to keep it)")
            labels = None
        else:
            if not isinstance(value, list | tuple):
                raise _Reject("malformed_row", f"{self.fields.labels} must be a list of labels")
            ids = [self._label(v) for v in value]
            if len(set(ids)) != len(ids):
                raise _Reject("malformed_row", f"{self.fields.labels} names a label twice")
            labels = tuple(sorted(ids))
        content = {"text": text, "labels": None if labels is None else list(labels)}
        return Example(self._id(record, content), text, None, labels)

    # -- ner --------------------------------------------------------------------------------------
    def _tokens(self, fields: dict) -> list[str]:
        tokens = fields.get(self.fields.tokens)
        if tokens is None:
            text = fields.get(self.fields.text)
            if text is None:
                raise _Reject("missing_field", f"no field {self.fields.tokens!r} or {self.fields.text!r}")
            if not isinstance(text, str):
                raise _Reject("malformed_row", f"{self.fields.text} is a {type(text).__name__}, not a string")
            return list(text.strip())
        if not isinstance(tokens, list | tuple) or not all(isinstance(t, str) for t in tokens):
            raise _Reject("malformed_row", f"{self.fields.tokens} must be a list of strings")
        return list(tokens)

    def _tags(self, value) -> list[str]:
        if not isinstance(value, list | tuple):
            raise _Reject("malformed_row", f"{self.fields.tags} must be a list")
        tags = []
        for tag in value:
            if isinstance(tag, int) and not isinstance(tag, bool):
                if not 0 <= tag < len(self.label_names):
                    raise _Reject("unknown_label", f"tag index {tag} is outside the {len(self.label_names)} tags")
                tag = self.label_names[tag]
            if not isinstance(tag, str) or not _BIO.match(tag):
                raise _Reject("invalid_bio", f"tag {tag!r} is not O, B-X or I-X")
            tags.append(tag)
        for prev, tag in zip(["O", *tags], tags, strict=False):
            if tag.startswith("I-") and prev[2:] != tag[2:]:
                raise _Reject("invalid_bio", f"{tag} follows {prev}")
        unknown = sorted({t for t in tags if t not in self.index})
        if unknown:
            raise _Reject("unknown_label", f"tags {unknown} are not among {self.label_names}")
        return tags

    def _ner(self, record: RawRecord, notes: list[str]) -> Example:
        fields = record.fields
        tokens = self._tokens(fields)
        value = fields.get(self.fields.tags)
        if value is None:
            if not self.allow_unlabeled:
                raise _Reject("missing_label", f"no {self.fields.tags!r} (pass --allow-unlabeled to keep it)")
            tags = None
        else:
            tags = self._tags(value)
            if len(tags) != len(tokens):
                raise _Reject("length_mismatch", f"{len(tokens)} tokens but {len(tags)} tags")
        kept_tokens, kept_tags = [], []
        for i, token in enumerate(tokens):
            cleaned, stripped = _clean(token)
            if stripped:
                notes.append("control_chars_stripped")
            if cleaned:  # a token that was only control characters goes, with its tag
                kept_tokens.append(cleaned)
                kept_tags.append(None if tags is None else tags[i])
        if not "".join(kept_tokens).strip():
            raise _Reject("empty_text", "no visible token")
        if sum(map(len, kept_tokens)) > self.max_chars:
            if not self.truncate:
                raise _Reject("text_too_long", f"{sum(map(len, kept_tokens))} characters, the cap is {self.max_chars}")
            total, cut = 0, 0
            while cut < len(kept_tokens) and total + len(kept_tokens[cut]) <= self.max_chars:
                total += len(kept_tokens[cut])
                cut += 1
            kept_tokens, kept_tags = kept_tokens[:cut], kept_tags[:cut]
            notes.append("truncated")
        final_tags = None if tags is None else tuple(kept_tags)
        content = {"tokens": kept_tokens, "tags": None if final_tags is None else list(final_tags)}
        return Example(self._id(record, content), "".join(kept_tokens), None, None, tuple(kept_tokens), final_tags)

    def _id(self, record: RawRecord, content: dict) -> str:
        given = record.fields.get(self.fields.id)
        if _present(given) and isinstance(given, str | int):
            return str(given)
        # Content and position: the same row at the same place always gets the same id.
        return "row-" + stable_id(record.source, str(record.position), content_id(content))
