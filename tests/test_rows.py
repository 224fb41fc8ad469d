"""The gold-row reader every command shares (zhkd/rows.py): strict bytes, bounded lines, one checker per label kind."""

from __future__ import annotations

import io

import pytest

from zhkd.errors import InputError
from zhkd.rows import (
    BLANK,
    LABEL_CHECKERS,
    SHOWN_BYTES,
    Fields,
    Validator,
    lines,
    read_delimited,
    read_file,
    read_jsonl,
)
from zhkd.tasks import get_task, task_names


class CountingReader(io.BytesIO):
    """Remembers the most bytes one readline call returned: what reading a line held in memory."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest = 0

    def readline(self, size: int = -1) -> bytes:
        chunk = super().readline(size)
        self.largest = max(self.largest, len(chunk))
        return chunk


def test_a_line_over_the_cap_is_rejected_without_being_read_whole():
    data = b'{"text": "a"}\n' + b"x" * 50_000 + b"\n" + b'{"text": "b"}\n'
    f = CountingReader(data)
    got = list(lines(f, max_bytes=1000))
    assert [(n, too_long) for n, _, too_long in got] == [(1, False), (2, True), (3, False)]
    assert len(got[1][1]) == SHOWN_BYTES and f.largest <= 1001
    records = list(read_jsonl(io.BytesIO(data), "in.jsonl", max_bytes=1000))
    assert [(r.position, r.error) for r in records] == [(1, None), (2, "line_too_long"), (3, None)]
    assert len(records[1].raw) == SHOWN_BYTES + 3


def test_invalid_utf8_rejects_the_row_never_replacing_bytes():
    records = list(read_jsonl(io.BytesIO(b'\xef\xbb\xbf{"text": "\xe5\xa5\xbd"}\n{"text": "\xe5\xa5"}\n'), "in.jsonl"))
    assert records[0].fields == {"text": "好"}  # the BOM of line 1 goes
    assert records[1].error == "invalid_utf8" and records[1].raw == '{"text": "\\xe5\\xa5"}'
    assert all("\ufffd" not in r.raw for r in records)
    check = Validator("classification", Fields(), None, max_chars=None, allow_unlabeled=True).check(records[1])
    assert check.dead.reason == "invalid_utf8" and check.dead.position == 2 and "not UTF-8" in check.dead.detail


def test_a_json_escape_of_a_lone_surrogate_rejects_the_row_and_a_whole_pair_is_read():
    data = (b'{"text": "\\u597d\\ud800"}\n'  # half a pair: no character, no UTF-8
            b'{"text": "ok \\ud83d\\ude00"}\n'  # a whole pair: one character
            b'{"text": "\\uD83D"}\n')  # upper-case hex alike
    got = list(read_jsonl(io.BytesIO(data), "x.jsonl"))
    assert [(r.position, r.error) for r in got] == [(1, "invalid_utf8"), (2, None), (3, "invalid_utf8")]
    assert got[1].fields == {"text": "ok \U0001f600"}


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty file"),
    (b"text,label\n", "a header row and no rows"),
    (b"text,label\n\n\n", "a header row and no rows"),
])
def test_an_empty_or_header_only_csv_is_one_error_naming_the_file(data, message):
    with pytest.raises(InputError, match=f"in.csv: {message}"):
        list(read_delimited(io.BytesIO(data), "in.csv", "csv"))


def test_read_file_refuses_missing_and_empty_files_and_reads_gzip(tmp_path):
    import gzip

    with pytest.raises(InputError, match="absent.jsonl: no such file"):
        next(read_file(tmp_path / "absent.jsonl"))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(InputError, match="empty.jsonl: empty file"):
        next(read_file(tmp_path / "empty.jsonl"))
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n\n'))
    assert [(r.position, r.error) for r in read_file(tmp_path / "rows.jsonl.gz")] == [(1, None), (2, BLANK)]
    (tmp_path / "rows.tsv").write_text("text\tlabel\n好\tpositive\n", encoding="utf-8")
    assert [r.fields for r in read_file(tmp_path / "rows.tsv")] == [{"text": "好", "label": "positive"}]


def test_every_task_in_the_table_has_a_row_checker():
    for name in task_names():
        assert get_task(name).label_kind in LABEL_CHECKERS, name


def test_without_label_names_labels_pass_through_type_checked():
    from zhkd.rows import RawRecord

    validator = Validator("classification", Fields(), None, max_chars=None, allow_unlabeled=True)
    ok = validator.check(RawRecord("in.jsonl", 1, "", {"text": "好", "label": "positive"}))
    assert ok.example.label == "positive"
    bad = validator.check(RawRecord("in.jsonl", 2, "", {"text": "好", "label": [1]}))
    assert bad.dead.reason == "malformed_row"
