"""Inference by task and the task-file reader shared by evaluation and fine-tuning."""

from __future__ import annotations

import gzip
import json
import random

import pytest
from conftest import NER_LABELS
from distill_support import corpus_file

from zhkd.distill.errors import DistillError
from zhkd.distill.predict import predict_labels, predict_logits, read_task_rows
from zhkd.errors import ZhkdError
from zhkd.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def sentiment_rows():
    return read_task_rows(corpus_file("chnsenti", "dev"), "classification")[0][:60]


@pytest.fixture(scope="module")
def ner_rows():
    return read_task_rows(corpus_file("pd98-ner", "dev"), "ner", NER_LABELS)[0][:40]


def close(a, b, tol=1e-4):
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_read_task_rows_maps_labels_from_the_bundled_files(tmp_path):
    rows, names = read_task_rows(corpus_file("chnsenti", "dev"), "classification")
    assert names == ["negative", "positive"] and len(rows) == 1736
    assert {r["label"] for r in rows} == {0, 1} and all(r["id"].startswith("chnsenti-") for r in rows)
    ner, tags = read_task_rows(corpus_file("pd98-ner", "dev"), "ner")
    assert tags[0] == "O" and tags.index("B-LOC") + 1 == tags.index("I-LOC")
    assert all(len(r["tags"]) == len(r["tokens"]) for r in ner)
    plain = tmp_path / "dev.jsonl"
    with gzip.open(corpus_file("chnsenti", "dev"), "rt", encoding="utf-8") as f:
        plain.write_text(f.read(), encoding="utf-8")
    assert read_task_rows(plain, "classification")[0] == rows


@pytest.mark.parametrize(("line", "task", "message"), [
    (b"{not json", "classification", r"not a JSON object \(malformed_json\)"),
    (b'{"id": "a", "text": "", "label": "positive"}', "classification", r"text is empty .*\(empty_text\)"),
    (b'{"id": "a", "text": "a", "label": "neutral"}', "classification", r"'neutral' is not one of .*unknown_label"),
    (b'{"id": "a", "text": "a"}', "classification", r"no 'label' .*\(missing_label\)"),
    (b'{"id": "a", "text": "a", "label": "positive"}', "pair", r"no field 'text_pair' \(missing_field\)"),
    (b'{"id": "a", "tokens": ["a", "b"], "tags": ["B-LOC"]}', "ner", r"2 tokens but 1 tags \(length_mismatch\)"),
    (b'{"id": "a", "text": "a", "label": 5}', "classification", r"label 5 is not one of .*unknown_label"),
    (b'{"id": "a", "text": "\xff", "label": 0}', "classification", r"not UTF-8 \(invalid_utf8\)"),
    (b"x" * (2 << 20), "classification", r"not read\) \(line_too_long\)"),
    (b'{"id": "a", "text": "a", "labels": "positive"}', "multilabel", r"must be a list .*\(malformed_row\)"),
    (b'{"id": "a", "text": "a", "labels": ["positive", "positive"]}', "multilabel",
     r"names a label twice \(malformed_row\)"),
    (b'{"id": "a", "text": "a", "labels": ["neutral"]}', "multilabel", r"'neutral' is not one of .*unknown_label"),
    (b'{"id": "a", "text": "a"}', "multilabel", r"no 'labels' .*\(missing_label\)"),
])
def test_a_bad_row_is_refused_naming_file_and_line(tmp_path, line, task, message):
    path = tmp_path / "bad.jsonl"
    good = '{"id": "g", "text": "很好", "text_pair": "好", "label": "positive", "labels": []}' if task != "ner" \
        else '{"id": "g", "tokens": ["中"], "tags": ["O"]}'
    path.write_bytes(good.encode() + b"\n" + line + b"\n")
    labels = ["negative", "positive"] if task != "ner" else NER_LABELS
    with pytest.raises(DistillError, match=rf"bad\.jsonl:2: .*{message}"):
        read_task_rows(path, task, labels)


def test_classification_logits_keep_input_order_whatever_the_batching(tiny_classifier, sentiment_rows):
    model, tokenizer = load_model("sequence", tiny_classifier), load_tokenizer(tiny_classifier)
    reference = predict_logits(model, tokenizer, sentiment_rows, "classification", batch_size=1)
    assert len(reference) == len(sentiment_rows) and all(len(r) == 2 for r in reference)
    batched = predict_logits(model, tokenizer, sentiment_rows, "classification", batch_size=7)
    assert all(close(a, b) for a, b in zip(batched, reference, strict=True))
    order = list(range(len(sentiment_rows)))
    random.Random(0).shuffle(order)
    shuffled = predict_logits(model, tokenizer, [sentiment_rows[i] for i in order], "classification", batch_size=16)
    assert all(close(shuffled[k], reference[i]) for k, i in enumerate(order))
    labels = predict_labels(model, tokenizer, sentiment_rows, "classification")
    assert labels == [max((0, 1), key=lambda c: (r[c], -c)) for r in reference]
    assert predict_logits(model, tokenizer, sentiment_rows, "classification", batch_size=7) == batched  # same bits


def test_pair_rows_use_both_texts(tiny_classifier):
    model, tokenizer = load_model("sequence", tiny_classifier), load_tokenizer(tiny_classifier)
    rows = [{"text": "今天天气很好", "text_pair": "天气不错"}, {"text": "今天天气很好", "text_pair": "我不喜欢"}]
    first, second = predict_logits(model, tokenizer, rows, "pair")
    assert not close(first, second, 1e-7)


def test_ner_logits_align_to_tokens_with_windows_and_pieceless_tokens(tiny_tagger, ner_rows):
    model, tokenizer = load_model("token", tiny_tagger), load_tokenizer(tiny_tagger)
    rows = [dict(r) for r in ner_rows]
    rows[0] = {**rows[0], "tokens": [*rows[0]["tokens"][:3], " ", *rows[0]["tokens"][3:]]}
    logits = predict_logits(model, tokenizer, rows, "ner", batch_size=8)
    assert [len(x) for x in logits] == [len(r["tokens"]) for r in rows]
    assert logits[0][3] == [0.0] * len(NER_LABELS)  # whitespace has no piece: zero logits
    assert predict_labels(model, tokenizer, rows[:1], "ner")[0][3] == NER_LABELS.index("O")
    # A row longer than max_length is cut into windows: every token still gets its logits, and a row
    # that fits in one window gives the same logits as without the limit.
    long_row = {"tokens": [t for r in ner_rows for t in r["tokens"]][:300]}
    short_row = next(r for r in ner_rows if len(r["tokens"]) <= 60)
    windowed = predict_logits(model, tokenizer, [long_row, short_row], "ner", max_length=64)
    assert len(windowed[0]) == 300 and all(any(v != 0 for v in t) for t in windowed[0])
    whole = predict_logits(model, tokenizer, [short_row, rows[1]], "ner")
    assert all(close(a, b) for a, b in zip(windowed[1], whole[0], strict=True))
    assert all(close(a, b) for a, b in zip(logits[1], whole[1], strict=True))


def test_unknown_task_is_a_user_error(tiny_classifier):
    model, tokenizer = load_model("sequence", tiny_classifier), load_tokenizer(tiny_classifier)
    with pytest.raises(ZhkdError, match="unknown task"):
        predict_logits(model, tokenizer, [{"text": "好"}], "regression")


def test_rows_may_lack_labels_when_asked(tmp_path):
    path = tmp_path / "unlabelled.jsonl"
    path.write_text(json.dumps({"id": "u", "text": "还行"}, ensure_ascii=False) + "\n", encoding="utf-8")
    rows, _ = read_task_rows(path, "classification", ["negative", "positive"], require_labels=False)
    assert rows == [{"id": "u", "text": "还行", "label": None}]
