"""Same input + seed => byte-identical output (in-process, another process, another PYTHONHASHSEED)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import random
from pathlib import Path

import pytest
from conftest import run_zhkd

from zhkd.augment.example import Example
from zhkd.augment.ids import VariantIds, content_id, stable_id, variant_hexes, variant_id
from zhkd.augment.policy import make_policy
from zhkd.pipelines.corpora import corpus_path, load_corpus


@pytest.fixture(scope="module")
def sentiment_slice(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("augment-in") / "in.jsonl"
    with gzip.open(corpus_path("chnsenti", "dev"), "rt", encoding="utf-8") as f:
        path.write_text("".join(line for _, line in zip(range(100), f, strict=False)), encoding="utf-8")
    return path


def augment_file(src: Path, out: Path, seed: int, hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = run_zhkd("augment", "--task", "classification", "--input", src, "--output", out,
                      "--num-aug", "5", "--seed", str(seed), env=env)
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


@pytest.fixture(scope="module")
def first_run(sentiment_slice) -> bytes:
    return augment_file(sentiment_slice, sentiment_slice.with_name("a.jsonl"), 3, "1")


def test_cli_output_is_byte_identical_across_processes_and_hash_seeds(sentiment_slice, first_run, tmp_path):
    assert augment_file(sentiment_slice, tmp_path / "b.jsonl", 3, "4242") == first_run
    assert augment_file(sentiment_slice, tmp_path / "c.jsonl", 4, "1") != first_run


def test_in_process_matches_the_cli(sentiment_slice, first_run):
    cli_rows = [json.loads(x) for x in first_run.splitlines()]
    policy = make_policy("classification", num_aug=5, seed=3)
    rows = [json.loads(x) for x in sentiment_slice.read_text("utf-8").splitlines()]
    texts = [v.text for r in rows for v in policy.variants(Example(r["id"], r["text"], label=r["label"]))]
    assert texts == [r["text"] for r in cli_rows]


def test_policy_results_do_not_depend_on_batching_pickling_or_global_rng():
    rows = list(load_corpus("chnsenti", "dev"))[:80]
    examples = [Example(r["id"], r["text"], label=r["label"]) for r in rows]
    policy = make_policy("classification", num_aug=6, seed=11)
    one_by_one = [policy.variants(e) for e in examples]
    random.seed(999)
    state = random.getstate()
    batched = pickle.loads(pickle.dumps(policy)).variants_batch(examples)
    assert batched == one_by_one
    assert random.getstate() == state
    assert len(pickle.dumps(policy)) < 4000


def test_variants_are_distinct_recorded_and_identified():
    policy = make_policy("classification", num_aug=8, seed=0)
    for r in list(load_corpus("chnsenti", "dev"))[:60]:
        variants = policy.variants(Example(r["id"], r["text"], label=r["label"]))
        assert variants[0].is_original and variants[0].ops == () and variants[0].id == r["id"]
        assert len(variants) <= 9 and len({v.text for v in variants}) == len(variants)
        for v in variants[1:]:
            assert v.ops and not v.is_original and v.source_id == r["id"] and v.label == r["label"]
            assert v.id.startswith(r["id"] + "~")


def test_ids_are_stable_values():
    assert stable_id("a", "bc") != stable_id("ab", "c")
    assert stable_id("a") == "40f89e395b66422f"   # pinned: ids must not change between versions
    assert content_id({"text": "好", "label": 1}) == content_id({"label": 1, "text": "好", "extra": "x"})
    assert content_id({"text": "好"}) != content_id({"text": "坏"})
    assert variant_id("s", ("synonym",), 0) != variant_id("s", ("synonym",), 1)
    ids = VariantIds("s")
    assert [ids(("synonym",), k) for k in (0, 5, 31, 40, 100)] == [variant_id("s", ("synonym",), k)
                                                                   for k in (0, 5, 31, 40, 100)]
    assert variant_id("s", ("synonym",), 3) == "s~" + variant_hexes("s", ("synonym",), 8)[48:64]


def test_pair_policy_changes_one_or_both_sides_and_keeps_the_label():
    policy = make_policy("pair", num_aug=10, seed=2)
    example = Example("p", "这家酒店的服务很好，房间也干净", "房间干净，服务员态度热情", label="entailment")
    variants = policy.variants(example)
    sides = {op.split("@")[1] for v in variants[1:] for op in v.ops}
    assert sides <= {"text", "text_pair", "both"} and len(sides) >= 2
    for v in variants[1:]:
        assert v.label == "entailment"
        side = v.ops[0].split("@")[1]
        if side == "text":
            assert v.text_pair == example.text_pair and v.text != example.text
        if side == "text_pair":
            assert v.text == example.text and v.text_pair != example.text_pair
