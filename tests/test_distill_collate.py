"""Collation: stored ids and re-tokenised ids agree, pairs get segments, NER aligns tokens, truncation."""

from __future__ import annotations

import pytest
import torch
from conftest import NER_LABELS
from distill_support import label_with_teacher, write_subset

from zhkd.distill.collate import IGNORE_INDEX, Collator, encode_texts
from zhkd.distill.reader import ShardReader
from zhkd.models import load_tokenizer


@pytest.fixture(scope="module")
def ner_dataset(tmp_path_factory, tiny_tagger):
    source = write_subset(tmp_path_factory.mktemp("ner") / "train.jsonl", "pd98-ner", "dev", 40)
    return label_with_teacher(source.parent / "data", "ner", source, tiny_tagger, num_shards=2)


@pytest.fixture(scope="module")
def sentiment_dataset(tmp_path_factory, tiny_classifier):
    source = write_subset(tmp_path_factory.mktemp("cls") / "train.jsonl", "chnsenti", "dev", 120)
    return label_with_teacher(source.parent / "data", "classification", source, tiny_classifier, num_shards=2)


@pytest.mark.parametrize("which", ["ner", "classification"])
def test_stored_ids_equal_a_fresh_tokenisation(which, ner_dataset, sentiment_dataset, tiny_tagger, tiny_classifier):
    data, checkpoint = (ner_dataset, tiny_tagger) if which == "ner" else (sentiment_dataset, tiny_classifier)
    tokenizer = load_tokenizer(checkpoint)
    batch = ShardReader(data, seed=0).take(0, 0, 24)
    stored = Collator(which, tokenizer, stored_ids=True)(batch)
    fresh = Collator(which, tokenizer, stored_ids=False)(batch)
    assert stored.keys() == fresh.keys()
    for key, value in stored.items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(fresh[key])), key


def test_ner_batch_aligns_tokens_tags_and_logits(ner_dataset, tiny_tagger):
    tokenizer = load_tokenizer(tiny_tagger)
    table = ShardReader(ner_dataset, seed=0).take(0, 0, 8)
    batch = Collator("ner", tokenizer, stored_ids=True)(table)
    rows = table.to_pylist()
    width = max(len(r["tokens"]) for r in rows)
    assert batch["token_starts"].shape == batch["labels"].shape == (8, width)
    assert batch["teacher_logits"].shape == (8, width, len(NER_LABELS))
    for i, row in enumerate(rows):
        n = len(row["tokens"])
        assert batch["labels"][i, :n].tolist() == row["tags"]
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all() and not batch["token_mask"][i, n:].any()
        assert torch.allclose(batch["teacher_logits"][i, :n], torch.tensor(row["teacher_logits"]))
        for t, start in enumerate(row["token_starts"]):
            assert batch["input_ids"][i, start] == tokenizer.convert_tokens_to_ids(row["tokens"][t])


def test_truncated_stored_ids_end_with_sep_and_mask_the_cut_tokens(ner_dataset, tiny_tagger):
    tokenizer = load_tokenizer(tiny_tagger)
    table = ShardReader(ner_dataset, shuffle=False).take(0, 0, 40)
    batch = Collator("ner", tokenizer, stored_ids=True, max_length=16)(table)
    assert batch["input_ids"].shape[1] == 16
    long_rows = batch["attention_mask"].sum(1) == 16
    assert long_rows.any() and (batch["input_ids"][long_rows, -1] == tokenizer.sep_token_id).all()
    cut = batch["token_starts"] < 0
    assert (batch["labels"][cut] == IGNORE_INDEX).all() and (batch["token_starts"] < 16).all()


def test_pair_segments_follow_the_first_sep(tiny_classifier):
    tokenizer = load_tokenizer(tiny_classifier)
    rows = [{"text": "今天天气很好", "text_pair": "不错", "label": 1},
            {"text": "好", "text_pair": "天气很好啊", "label": 0}]
    batch = Collator("pair", tokenizer, stored_ids=False)(rows)
    expected = tokenizer([r["text"] for r in rows], [r["text_pair"] for r in rows], padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["token_type_ids"], expected["token_type_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])
    assert batch["labels"].tolist() == [1, 0]
    assert encode_texts(tokenizer, ["好"])[0] == tokenizer("好")["input_ids"]
