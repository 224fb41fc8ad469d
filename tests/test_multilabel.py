"""The `multilabel` task type: its metric and losses by hand, its corpus, and every stage end to end.

The end-to-end run works on a slice of the bundled `pd98-types` corpus (which entity types a People's
Daily sentence names): `zhkd augment`, then `zhkd build` on Beam's in-process runner from the augmented
file, a teacher made by `zhkd finetune` from a tiny MLM, `zhkd distill` through pre, kd and post, and
`zhkd evaluate`. Each step runs once per module; the tests check what each left behind.
"""

from __future__ import annotations

import json
import math
from itertools import islice
from pathlib import Path

import datasets
import pytest
import torch
from conftest import TYPE_LABELS, write_jsonl
from distill_support import read_log

from zhkd.cli import main
from zhkd.distill.collate import IGNORE_INDEX, Collator
from zhkd.distill.config import LossConfig
from zhkd.distill.losses import binary_kl, hard_bce, loss_sums, soft_bce
from zhkd.distill.metrics import multilabel_scores
from zhkd.distill.predict import predict_labels, present_labels, read_task_rows
from zhkd.models import load_model, load_tokenizer
from zhkd.pipelines.corpora import load_corpus
from zhkd.shards import validate

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# --- the metric and the losses, by hand ------------------------------------------------------------------


def test_micro_and_macro_f1_match_a_hand_computation():
    # Labels LOC=0, ORG=1, PER=2. Per label (tp, fp, fn): LOC (2, 0, 0) -> F1 1; ORG (1, 0, 0) -> 1;
    # PER (1, 2, 1) -> P 1/3, R 1/2, F1 0.4. Pooled: (4, 2, 1) -> micro F1 8/11. Macro (1 + 1 + 0.4) / 3.
    # Exact sets: rows 3, 4 and 5 (both empty) of 6.
    gold = [[0, 2], [], [1], [0], [2], []]
    pred = [[0], [2], [1, 2], [0], [2], []]
    scores = multilabel_scores(gold, pred, TYPE_LABELS)
    assert scores["micro_f1"] == pytest.approx(8 / 11)
    assert scores["macro_f1"] == pytest.approx(0.8)
    assert scores["exact_match"] == pytest.approx(0.5)
    assert (scores["f1_LOC"], scores["f1_ORG"], scores["f1_PER"]) == pytest.approx((1.0, 1.0, 0.4))
    with pytest.raises(ValueError, match="predictions"):
        multilabel_scores(gold, pred[:-1], TYPE_LABELS)


def test_the_per_label_soft_loss_matches_a_hand_computation():
    # Student logits (1, -2), teacher logits (2, 0), T = 2. Teacher probabilities sigmoid(1) = 0.731059 and
    # sigmoid(0) = 0.5; student sigmoid(0.5) = 0.622459 and sigmoid(-1) = 0.268941. Binary cross-entropy
    # per label: 0.731059 * 0.474077 + 0.268941 * 0.974077 = 0.608552, and 0.5 * 1.313262 + 0.5 * 0.313262
    # = 0.813262; their mean 0.710907, times T^2 = 2.843628.
    student, teacher = torch.tensor([[1.0, -2.0]]), torch.tensor([[2.0, 0.0]])
    assert soft_bce(student, teacher, 2.0).item() == pytest.approx(2.843628, abs=1e-5)
    # The KL form is the same less the teacher's binary entropy (0.582203 and ln 2 = 0.693147), times T^2.
    entropy = (0.582203 + 0.693147) / 2 * 4
    assert binary_kl(student, teacher, 2.0).item() == pytest.approx(2.843628 - entropy, abs=1e-5)
    assert binary_kl(teacher.clone(), teacher, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_the_soft_losses_share_one_gradient():
    student = torch.randn(5, 4, requires_grad=True)
    teacher = torch.randn(5, 4)
    grads = []
    for loss in (soft_bce, binary_kl):
        student.grad = None
        loss(student, teacher, 4.0).sum().backward()
        grads.append(student.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_gold_loss_is_bce_over_labelled_rows_only():
    logits = torch.tensor([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0], [-3.0, 0.0, 0.2]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [IGNORE_INDEX] * 3, [0.0, 0.0, 0.0]])
    per_row = hard_bce(logits, targets)
    expected = torch.nn.BCEWithLogitsLoss()(logits[[0, 2]], targets[[0, 2]])  # transformers' own loss
    assert per_row[1] == 0 and per_row[[0, 2]].mean().item() == pytest.approx(expected.item())
    sums = loss_sums(logits, targets, logits.clone(), LossConfig(alpha=0.5), kind="multilabel")
    assert sums["hard_count"].item() == 2 and sums["soft_count"].item() == 3
    assert sums["soft_sum"].item() == pytest.approx(0.0, abs=1e-6)


def test_collation_makes_multi_hot_targets_and_skips_rows_without_gold():
    class Pad:
        pad_token_id, sep_token_id = 0, 3

    rows = [{"input_ids": [2, 5, 3], "labels": [0, 2], "teacher_logits": [0.1, 0.2, 0.3]},
            {"input_ids": [2, 3], "labels": [], "teacher_logits": [0.0, 0.0, 0.0]},
            {"input_ids": [2, 6, 7, 3], "labels": None, "teacher_logits": [1.0, 2.0, 3.0]}]
    batch = Collator("multilabel", Pad(), stored_ids=True, token_types=False)(rows)
    assert batch["labels"].tolist() == [[1, 0, 1], [0, 0, 0], [IGNORE_INDEX] * 3]
    assert batch["teacher_logits"].shape == (3, 3)


def test_a_sigmoid_of_one_half_is_the_threshold():
    assert present_labels([0.0, -1e-6, 3.0, -2.0]) == [0, 2]


# --- the corpus -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["dev", "test"])
def test_pd98_types_names_the_entity_types_of_each_pd98_ner_sentence(split):
    for ner, types in zip(load_corpus("pd98-ner", split), load_corpus("pd98-types", split), strict=True):
        assert types["id"] == ner["id"] and types["text"] == "".join(ner["tokens"])
        assert types["labels"] == sorted({t[2:] for t in ner["tags"] if t.startswith("B-")})


# --- end to end ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("types")
    return {split: write_jsonl(root / f"{split}.jsonl", islice(load_corpus("pd98-types", split), rows))
            for split, rows in (("train", 40), ("dev", 24), ("test", 24))}


@pytest.fixture(scope="module")
def augmented(files) -> Path:
    out = files["train"].with_name("augmented.jsonl")
    assert main(["augment", "--task", "multilabel", "--input", str(files["train"]), "--output", str(out),
                 "--num-aug", "2", "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def teacher(files, tiny_mlm, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("types-teacher") / "teacher"
    assert main(["finetune", "--task", "multilabel", "--train", str(files["train"]), "--dev", str(files["dev"]),
                 "--init", str(tiny_mlm), "--labels", ",".join(TYPE_LABELS), "--output", str(out),
                 "--max-steps", "4", "--batch-size", "16", "--lr", "3e-3", "--max-length", "64"]) == 0
    return out


@pytest.fixture(scope="module")
def soft(augmented, teacher, tmp_path_factory) -> Path:
    from zhkd.pipelines.build import build
    from zhkd.pipelines.build_config import BuildConfig

    out = tmp_path_factory.mktemp("types-soft") / "soft"
    config = BuildConfig(task="multilabel", inputs=(str(augmented),), output=str(out), teacher=str(teacher),
                         num_aug=1, seed=5, num_shards=2, max_length=64)
    assert build(config, log=lambda _: None).built
    return out


@pytest.fixture(scope="module")
def student(soft, teacher, files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("types-student") / "student"
    assert main(["distill", "--data", str(soft), "--teacher", str(teacher), "--student", "mini",
                 "--stages", "pre,kd,post", "--train", str(files["train"]), "--dev", str(files["dev"]),
                 "--output", str(out), "--max-steps", "5", "--batch-size", "16", "--lr", "3e-3",
                 "--max-length", "64", "--soft-loss", "ce"]) == 0
    return out


def test_augment_keeps_each_sources_label_set(files, augmented):
    sources = {r["id"]: r for r in map(json.loads, files["train"].read_text("utf-8").splitlines())}
    rows = [json.loads(line) for line in augmented.read_text("utf-8").splitlines()]
    variants = [r for r in rows if not r["is_original"]]
    assert {r["source_id"] for r in rows} == set(sources) and variants
    assert all(r["labels"] == sources[r["source_id"]]["labels"] for r in rows)
    assert any(r["text"] != sources[r["source_id"]]["text"] for r in variants)


def test_finetune_writes_a_multi_label_head(teacher):
    model = load_model("sequence", teacher)
    assert model.config.problem_type == "multi_label_classification"
    assert [model.config.id2label[i] for i in range(3)] == TYPE_LABELS


def test_build_stores_label_sets_and_per_label_logits(soft, augmented):
    manifest = validate(soft)
    assert manifest["task"] == "multilabel" and manifest["label_names"] == TYPE_LABELS
    gold = {r["id"]: r["labels"] for r in map(json.loads, augmented.read_text("utf-8").splitlines())}
    table = datasets.load_from_disk(str(soft))
    assert table.num_rows == manifest["total_rows"] > len(gold)  # the build augmented the augmented file again
    for row in table:
        assert [TYPE_LABELS[i] for i in row["labels"]] == gold[row["source_id"]]
        assert len(row["teacher_logits"]) == len(TYPE_LABELS)
    counts = manifest["stats"]["labels"]["original"]
    assert counts.get("(none)", 0) == sum(not labels for labels in gold.values())
    assert counts.get("PER", 0) == sum("PER" in labels for labels in gold.values())
    card = (soft / "README.md").read_text("utf-8")
    assert "label (rows holding it" in card and "exactly the gold set" in card


def test_build_refuses_a_teacher_without_a_multi_label_head(augmented, tiny_classifier, tmp_path):
    result = main(["build", "--task", "multilabel", "--input", str(augmented), "--teacher", str(tiny_classifier),
                   "--output", str(tmp_path / "out")])
    assert result == 2 and not (tmp_path / "out").exists()


def test_distill_runs_pre_kd_and_post_on_label_sets(student):
    events = read_log(student)
    assert [e["stage"] for e in events if e["event"] == "stage_end"] == ["pre", "kd", "post"]
    kd_steps = [e for e in events if e["event"] == "step" and e["stage"] == "kd"]
    assert kd_steps and all(e["soft"] is not None and e["soft"] >= 0 for e in kd_steps)
    assert next(e for e in events if e["event"] == "distill")["stored_input_ids"] is True
    dev = [e for e in events if e["event"] == "dev"]
    assert {e["metric"] for e in dev} == {"micro_f1"} and all(0 <= e["ece"] <= 1 for e in dev)
    assert load_model("sequence", student).config.problem_type == "multi_label_classification"


def test_evaluate_scores_label_sets_as_the_metric_says(student, teacher, files, tmp_path):
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--task", "multilabel", "--teacher", str(teacher), "--model", f"student={student}",
                 "--test", str(files["test"]), "--output", str(out), "--reference", "none", "--runs", "2",
                 "--warmup", "0", "--throughput-batch", "2", "--devices", "cpu"]) == 0
    result = json.loads((out / "evaluation.json").read_text("utf-8"))
    assert result["metrics"] == ["micro_f1", "macro_f1", "exact_match"] and result["primary_metric"] == "micro_f1"
    rows, names = read_task_rows(files["test"], "multilabel", TYPE_LABELS)
    for entry in result["models"]:
        model, tokenizer = load_model("sequence", entry["path"]), load_tokenizer(entry["path"])
        expected = multilabel_scores([r["labels"] for r in rows], predict_labels(model, tokenizer, rows,
                                                                                 "multilabel"), names)
        assert entry["scores"] == pytest.approx(expected)
        assert math.isclose(entry["score"], expected["micro_f1"])


def test_augment_rejects_labels_that_are_not_a_list(tmp_path):
    rows = [{"id": "a", "text": "北京", "labels": ["LOC"]}, {"id": "b", "text": "北京", "labels": "LOC"},
            {"id": "c", "text": "上海", "labels": ["LOC", "LOC"]}, {"id": "d", "text": "好", "labels": []}]
    out = tmp_path / "out.jsonl"
    assert main(["augment", "--task", "multilabel", "--input", str(write_jsonl(tmp_path / "in.jsonl", rows)),
                 "--output", str(out), "--num-aug", "0"]) == 0
    kept = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [(r["id"], r["labels"]) for r in kept] == [("a", ["LOC"]), ("d", [])]
    rejected = [json.loads(line) for line in (tmp_path / "out.rejected.jsonl").read_text("utf-8").splitlines()]
    assert [(r["line"], r["reason"]) for r in rejected] == [(2, "malformed_row"), (3, "malformed_row")]
    assert "must be a list" in rejected[0]["detail"] and "names a label twice" in rejected[1]["detail"]
