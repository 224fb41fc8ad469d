"""Sources and validation without a pipeline: each bad row gets its reason, good rows their example."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zhkd.pipelines.errors import PipelineError
from zhkd.pipelines.sources import expand_inputs, read_unit
from zhkd.rows import BLANK, Fields, Validator, infer_label_names

LABELS = ["negative", "positive"]
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def records(path, fmt="auto"):
    return [r for unit in expand_inputs((str(path),), fmt) for r in read_unit(unit)]


def check(record, task="classification", labels=LABELS, **kw):
    options = {"max_chars": 20, **kw}
    return Validator(task, Fields(), labels, **options).check(record)


def test_jsonl_rows_blank_lines_and_parse_errors(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "\xe5\xa5\xbd", "label": 1}\n\n{"text": "broken\n[1, 2]\n'
                     b'{"text": "\xff\xfe", "label": "positive"}\n')
    got = records(path)
    assert [(r.position, r.error) for r in got] == [(1, None), (2, BLANK), (3, "malformed_json"),
                                                    (4, "malformed_json"), (5, "invalid_utf8")]
    assert got[0].fields == {"text": "好", "label": 1} and got[0].source == "in.jsonl"
    assert got[4].raw == '{"text": "\\xff\\xfe", "label": "positive"}'


def test_csv_and_tsv_keep_raw_rows_and_reject_bad_ones(tmp_path):
    csv_path = tmp_path / "in.csv"
    csv_path.write_bytes(b'text,label\n"multi\nline",positive\na,b,c\n"bad"quote,negative\n\xff\xfe,positive\n'
                         b'fine,negative\n')
    got = records(csv_path)
    assert [(r.position, r.error) for r in got] == [(2, None), (4, "malformed_csv"), (5, "malformed_csv"),
                                                    (6, "invalid_utf8"), (7, None)]
    assert got[0].fields == {"text": "multi\nline", "label": "positive"}
    assert got[3].raw == "\\xff\\xfe,positive"
    tsv_path = tmp_path / "in.tsv"
    tsv_path.write_text('text\tlabel\n他说"好"\tpositive\n', encoding="utf-8")
    assert [r.fields for r in records(tsv_path)] == [{"text": '他说"好"', "label": "positive"}]


def test_parquet_and_saved_dataset_sources(tmp_path):
    import datasets

    pq.write_table(pa.table({"text": ["一", "二"], "label": [0, 1]}), tmp_path / "in.parquet")
    assert [(r.position, r.fields) for r in records(tmp_path / "in.parquet")] == [
        (0, {"text": "一", "label": 0}), (1, {"text": "二", "label": 1})]
    datasets.Dataset.from_dict({"text": ["三", "四", "五"], "label": ["positive"] * 3}).save_to_disk(tmp_path / "ds")
    got = records(tmp_path / "ds")
    assert [r.fields["text"] for r in got] == ["三", "四", "五"] and got[2].position == 2


def test_globs_and_missing_inputs(tmp_path):
    for name in ("b.jsonl", "a.jsonl"):
        (tmp_path / name).write_text('{"text": "x"}\n', encoding="utf-8")
    units = expand_inputs((str(tmp_path / "*.jsonl"),))
    assert [u.path.rsplit("/", 1)[1] for u in units] == ["a.jsonl", "b.jsonl"]
    with pytest.raises(PipelineError, match="no such file"):
        expand_inputs((str(tmp_path / "missing.jsonl"),))
    (tmp_path / "data.txt").write_text("x", encoding="utf-8")
    with pytest.raises(PipelineError, match="--input-format"):
        expand_inputs((str(tmp_path / "data.txt"),))


def _record(fields, position=1):
    from zhkd.rows import RawRecord

    return RawRecord("in.jsonl", position, json.dumps(fields, ensure_ascii=False), fields)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"label": "positive"}, "missing_field"),
    ({"text": 12, "label": "positive"}, "malformed_row"),
    ({"text": " \t ", "label": "positive"}, "empty_text"),
    ({"text": "长" * 21, "label": "positive"}, "text_too_long"),
    ({"text": "还行", "label": "neutral"}, "unknown_label"),
    ({"text": "还行", "label": 2}, "unknown_label"),
    ({"text": "还行"}, "missing_label"),
    ({"text": "还行", "label": ""}, "missing_label"),
])
def test_classification_reasons(fields, reason):
    checked = check(_record(fields))
    assert checked.example is None and checked.dead.reason == reason
    assert checked.dead.raw == json.dumps(fields, ensure_ascii=False) and checked.dead.position == 1


def test_classification_normalises_and_maps_labels():
    checked = check(_record({"text": " 很\x07好\u200b\x00 ", "label": "positive"}))
    assert checked.example.text == "很好" and checked.example.label == 1
    assert checked.notes == ("control_chars_stripped",)
    assert check(_record({"text": "好", "label": 0})).example.label == 0
    assert check(_record({"text": "好", "label": "1"})).example.label == 1
    assert check(_record({"text": "好"}), allow_unlabeled=True).example.label is None
    cut = check(_record({"text": "长" * 30, "label": 1}), truncate=True)
    assert cut.example.text == "长" * 20 and cut.notes == ("truncated",)
    pair = Validator("pair", Fields(), LABELS, max_chars=20).check(_record({"text": "甲", "text_pair": "乙",
                                                                             "label": 0}))
    assert (pair.example.text, pair.example.text_pair) == ("甲", "乙")


def test_ids_are_given_or_stable_by_content_and_position():
    given = check(_record({"id": "r7", "text": "好", "label": 1})).example.id
    first = check(_record({"text": "好", "label": 1}, position=3)).example.id
    again = check(_record({"text": "好", "label": 1}, position=3)).example.id
    moved = check(_record({"text": "好", "label": 1}, position=4)).example.id
    changed = check(_record({"text": "坏", "label": 1}, position=3)).example.id
    assert given == "r7" and first == again and len({first, moved, changed}) == 3


@pytest.mark.parametrize(("fields", "reason"), [
    ({"tokens": ["张", "三"], "tags": ["B-PER"]}, "length_mismatch"),
    ({"tokens": ["张", "三"], "tags": ["O", "I-PER"]}, "invalid_bio"),
    ({"tokens": ["张", "三"], "tags": ["B-PER", "I-LOC"]}, "invalid_bio"),
    ({"tokens": ["张", "三"], "tags": ["X-PER", "O"]}, "invalid_bio"),
    ({"tokens": ["张", "三"], "tags": ["B-MISC", "I-MISC"]}, "unknown_label"),
    ({"tokens": ["张", "三"], "tags": [0, 9]}, "unknown_label"),
    ({"tokens": ["张", "三"]}, "missing_label"),
    ({"tokens": "张三", "tags": ["O", "O"]}, "malformed_row"),
    ({"tags": ["O"]}, "missing_field"),
    ({"tokens": [" ", "\x07"], "tags": ["O", "O"]}, "empty_text"),
])
def test_ner_reasons(fields, reason):
    checked = check(_record(fields), task="ner", labels=TAGS)
    assert checked.dead is not None and checked.dead.reason == reason


def test_ner_tokens_tags_and_control_tokens():
    checked = check(_record({"tokens": ["张", "\x07", "三", "在"], "tags": [1, "I-PER", "I-PER", "O"]}),
                    task="ner", labels=TAGS)
    assert checked.example.tokens == ("张", "三", "在") and checked.example.tags == ("B-PER", "I-PER", "O")
    assert checked.example.text == "张三在" and checked.notes == ("control_chars_stripped",)
    from_text = check(_record({"text": "北京"}), task="ner", labels=TAGS, allow_unlabeled=True)
    assert from_text.example.tokens == ("北", "京") and from_text.example.tags is None


def test_infer_label_names():
    assert infer_label_names(["pos", "neg", None, "pos"]) == ["neg", "pos"]
    assert infer_label_names([2, "0", None]) == ["0", "1", "2"]
    assert infer_label_names([]) == []


TYPES = ["LOC", "ORG", "PER"]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"text": "北京", "labels": "LOC"}, "malformed_row"),
    ({"text": "北京", "labels": ["LOC", "LOC"]}, "malformed_row"),
    ({"text": "北京", "labels": ["MISC"]}, "unknown_label"),
    ({"text": "北京", "labels": [7]}, "unknown_label"),
    ({"text": "北京"}, "missing_label"),
    ({"labels": ["LOC"]}, "missing_field"),
])
def test_multilabel_reasons(fields, reason):
    checked = check(_record(fields), task="multilabel", labels=TYPES)
    assert checked.dead is not None and checked.dead.reason == reason


def test_a_multilabel_row_keeps_its_label_set_and_an_empty_set_is_labelled():
    checked = check(_record({"text": "张三在北京", "labels": ["PER", 0]}), task="multilabel", labels=TYPES)
    assert checked.example.label == (0, 2) and checked.dead is None
    assert check(_record({"text": "好", "labels": []}), task="multilabel", labels=TYPES).example.label == ()
    assert check(_record({"text": "好"}), task="multilabel", labels=TYPES,
                 allow_unlabeled=True).example.label is None
    renamed = Validator("multilabel", Fields(labels="types"), TYPES, max_chars=20).check(
        _record({"text": "好", "types": ["ORG"]}))
    assert renamed.example.label == (1,)
