"""`zhkd evaluate` end to end on tiny random models and slices of the bundled corpora's test splits.

Every figure the report states is recomputed here from the values it records (or from the files and
models themselves), so a wrong ratio, a wrong metric or a missing field fails.
"""

from __future__ import annotations

import json
import statistics
from itertools import islice
from pathlib import Path

import pytest
from conftest import NER_LABELS, constant_classifier, run_zhkd, tiny_checkpoint, write_jsonl

from zhkd.distill.metrics import entity_spans
from zhkd.pipelines.corpora import load_corpus

FAST = ("--runs", "3", "--warmup", "1", "--throughput-batch", "2")


@pytest.fixture(scope="module")
def test_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("evaluate-data")
    return {
        "classification": write_jsonl(folder / "chnsenti.jsonl", islice(load_corpus("chnsenti", "test"), 48)),
        "ner": write_jsonl(folder / "pd98.jsonl", islice(load_corpus("pd98-ner", "test"), 32)),
    }


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory, test_files) -> tuple[dict, Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("evaluate-classification")
    models = {
        "teacher": constant_classifier(folder / "always-positive", 1, hidden=64),
        "student": constant_classifier(folder / "always-negative", 0, hidden=32),
    }
    out = folder / "report"
    result = run_zhkd("evaluate", "--task", "classification", "--teacher", models["teacher"],
                      "--model", f"student={models['student']}", "--test", test_files["classification"],
                      "--output", out, "--seq-len", "16", *FAST)  # short inputs keep the BERT-base timing quick
    assert result.returncode == 0, result.stderr
    assert "| student |" in result.stdout
    return json.loads((out / "evaluation.json").read_text("utf-8")), out, models


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, tiny_tagger, test_files) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("evaluate-ner")
    student = tiny_checkpoint(folder / "student", "token", labels=NER_LABELS, hidden=16, seed=3)
    out = folder / "report"
    result = run_zhkd("evaluate", "--task", "ner", "--teacher", f"big={tiny_tagger}", "--model", student,
                      "--test", test_files["ner"], "--output", out, "--reference", "mini", *FAST)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "evaluation.json").read_text("utf-8")), out


def by_name(result: dict) -> dict[str, dict]:
    return {e["name"]: e for e in result["models"]}


def test_classification_scores_match_hand_computed_values(classification_run, test_files):
    result, _, _ = classification_run
    rows = [json.loads(line) for line in test_files["classification"].read_text("utf-8").splitlines()]
    positive = sum(r["label"] == "positive" for r in rows) / len(rows)
    teacher, student = by_name(result)["teacher"], by_name(result)["student"]
    # always "positive": accuracy = share of positives; F1(positive) = 2p / (p + 1); F1(negative) = 0.
    assert teacher["scores"]["accuracy"] == pytest.approx(positive)
    assert teacher["scores"]["macro_f1"] == pytest.approx((2 * positive / (positive + 1)) / 2)
    assert student["scores"]["accuracy"] == pytest.approx(1 - positive)
    assert student["score"] == student["scores"]["accuracy"]
    assert student["score_pct_of_teacher"] == pytest.approx(100 * (1 - positive) / positive)
    assert teacher["score_pct_of_teacher"] == pytest.approx(100.0)


def check_report(result: dict, out: Path, *, metrics: tuple[str, ...]) -> None:
    """Fields present, scores in range, and every ratio equal to the one the recorded values give."""
    settings = result["latency_settings"]
    reference = result["reference"]
    throughput = f"batch_{settings['throughput_batch']}"
    teacher = next(e for e in result["models"] if e["role"] == "teacher")
    assert result["metrics"] == list(metrics)
    for entry in result["models"]:
        assert set(metrics) <= set(entry["scores"])
        assert all(0.0 <= entry["scores"][m] <= 1.0 for m in metrics)
        assert entry["score"] == entry["scores"][result["primary_metric"]]
        if teacher["score"]:
            assert entry["score_pct_of_teacher"] == pytest.approx(100 * entry["score"] / teacher["score"])
        assert entry["size_bytes"] == sum(f.stat().st_size for f in Path(entry["path"]).glob("*.safetensors"))
        for base, key in ((teacher, "vs_teacher"), (reference, "vs_reference")):
            ratios = entry[key]
            assert ratios["compression"] == pytest.approx(base["parameters"] / entry["parameters"])
            for device, speed in entry["latency"].items():
                assert speed["batch_1"]["seq_len"] == settings["seq_len"]
                assert speed["batch_1"]["dtype"] == ("bfloat16" if device == "cuda" else "float32")
                assert speed["batch_1"]["batch_size"] == 1 and speed[throughput]["batch_size"] == 2
                assert speed["batch_1"]["p50_ms"] > 0 and speed["batch_1"]["p95_ms"] >= speed["batch_1"]["p50_ms"]
                base_speed = base["latency"][device]
                assert ratios["speedup"][device] == pytest.approx(
                    base_speed["batch_1"]["p50_ms"] / speed["batch_1"]["p50_ms"])
                assert ratios["throughput_speedup"][device] == pytest.approx(
                    speed[throughput]["rows_per_s"] / base_speed[throughput]["rows_per_s"])
    assert teacher["vs_teacher"]["compression"] == 1.0 and teacher["vs_teacher"]["speedup"]["cpu"] == 1.0
    markdown = (out / "evaluation.md").read_text("utf-8")
    assert all(f"| {e['name']}" in markdown for e in result["models"])
    assert f"speed-up vs {result['reference_shape']}" in markdown and "% of teacher" in markdown
    assert "### CPU (float32 weights)" in markdown
    assert (out / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classification_report(classification_run, test_files):
    result, out, models = classification_run
    check_report(result, out, metrics=("accuracy", "macro_f1"))
    reference = result["reference"]
    assert result["reference_shape"] == "bert-base"
    assert reference["shape"]["layers"] == 12 and reference["shape"]["hidden"] == 768
    teacher = by_name(result)["teacher"]
    assert reference["shape"]["vocab_size"] == teacher["shape"]["vocab_size"]
    assert reference["vs_reference"]["compression"] == 1.0 and reference["vs_reference"]["speedup"]["cpu"] == 1.0
    assert reference["vs_teacher"]["compression"] == pytest.approx(teacher["parameters"] / reference["parameters"])
    assert reference["vs_teacher"]["speedup"]["cpu"] == pytest.approx(
        teacher["latency"]["cpu"]["batch_1"]["p50_ms"] / reference["latency"]["cpu"]["batch_1"]["p50_ms"])
    # The reference is far bigger and slower than a tiny model, as measured.
    assert teacher["vs_reference"]["compression"] > 50 and teacher["vs_reference"]["speedup"]["cpu"] > 1
    assert result["test"] == {"rows": 48, "source": str(test_files["classification"])}
    assert result["latency_settings"]["seq_len"] == 16 and result["latency_settings"]["seq_len_from"] == "given"


def test_latency_length_is_the_median_token_length(ner_run, tiny_tagger, test_files):
    from zhkd.models import load_tokenizer

    result, _ = ner_run
    tokenizer = load_tokenizer(tiny_tagger)
    tokens = [json.loads(line)["tokens"] for line in test_files["ner"].read_text("utf-8").splitlines()]
    lengths = [len(tokenizer(t, is_split_into_words=True)["input_ids"]) for t in tokens]
    assert result["latency_settings"]["seq_len"] == statistics.median_low(lengths)
    assert result["latency_settings"]["seq_len_from"] == "median token length of the test set"


def test_parameters_are_counted_from_the_model(classification_run):
    from zhkd.models import load_model

    result, _, models = classification_run
    for name, path in models.items():
        model = load_model("sequence", path)
        assert by_name(result)[name]["parameters"] == sum(p.numel() for p in model.parameters())


def test_ner_report(ner_run, test_files):
    result, out = ner_run
    check_report(result, out, metrics=("precision", "recall", "f1"))
    assert result["primary_metric"] == "f1"
    assert [e["name"] for e in result["models"]] == ["big", "student"]
    assert result["reference"]["shape"]["layers"] == 2  # the "mini" reference asked for


def test_ner_all_outside_scores_zero_recall(tmp_path, test_files):
    """A tagger that says "O" everywhere finds no entity: precision, recall and F1 are all zero."""
    import torch

    from zhkd.distill.evaluate import LatencySettings, evaluate_models
    from zhkd.distill.predict import read_task_rows
    from zhkd.models import load_model

    path = tiny_checkpoint(tmp_path / "outside", "token", labels=NER_LABELS, hidden=16)
    model = load_model("token", path)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[NER_LABELS.index("O")] = 1.0
    model.save_pretrained(str(path), safe_serialization=True)
    rows, labels = read_task_rows(test_files["ner"], "ner", label_names=NER_LABELS)
    assert any(entity_spans([labels[t] for t in r["tags"]]) for r in rows)
    result = evaluate_models("ner", {"outside": path}, rows, labels, tmp_path / "report", reference=None,
                             latency=LatencySettings(runs=2, warmup=0, throughput_batch=2), progress=False)
    scores = result["models"][0]["scores"]
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.0
    assert result["reference"] is None and result["models"][0]["vs_reference"] is None
    assert result["models"][0]["score_pct_of_teacher"] is None
    assert "% of teacher" not in (tmp_path / "report" / "evaluation.md").read_text("utf-8")


def test_pair_task_scores_accuracy_and_f1(tmp_path):
    from zhkd.distill.evaluate import LatencySettings, evaluate_models
    from zhkd.distill.predict import read_task_rows

    labels = ["different", "same"]
    path = tiny_checkpoint(tmp_path / "pair", "sequence", labels=labels, hidden=16)
    texts = [r["text"] for r in islice(load_corpus("chnsenti", "test"), 12)]
    pairs = [{"text": a, "text_pair": b, "label": labels[i % 2]} for i, (a, b) in enumerate(zip(texts, texts[::-1],
                                                                                                strict=True))]
    rows, names = read_task_rows(write_jsonl(tmp_path / "pairs.jsonl", pairs), "pair", label_names=labels)
    result = evaluate_models("pair", {"m": path}, rows, names, tmp_path / "report", reference=None,
                             latency=LatencySettings(runs=2, warmup=0, throughput_batch=2), progress=False)
    scores = result["models"][0]["scores"]
    assert set(scores) >= {"accuracy", "f1"} and result["metrics"] == ["accuracy", "f1"]
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_model_spec_parsing():
    from zhkd.commands.evaluate import parse_model_spec

    assert parse_model_spec("student=/tmp/a/b") == ("student", "/tmp/a/b")
    assert parse_model_spec("/tmp/a/b/") == ("b", "/tmp/a/b/")
    assert parse_model_spec("runs/x=1") == ("x=1", "runs/x=1")


def test_a_time_budget_cuts_runs_but_never_below_the_minimum():
    import time
    from types import SimpleNamespace

    import torch

    from zhkd.distill.latency import MIN_RUNS, measure_latency

    class Sleeper(torch.nn.Module):
        config = SimpleNamespace(vocab_size=20)

        def forward(self, input_ids, attention_mask):
            time.sleep(0.002)

    model = Sleeper()
    assert measure_latency(model, runs=12, warmup=0, device="cpu").runs == 12
    capped = measure_latency(model, runs=12, warmup=0, device="cpu", max_seconds=1e-6)
    assert capped.runs == MIN_RUNS and capped.p50_ms >= 2.0 and capped.rows_per_s <= 500


def test_latency_is_timed_in_the_asked_dtype_on_a_copy(tiny_classifier):
    import torch

    from zhkd.distill.latency import measure_latency, serving_dtype
    from zhkd.models import load_model

    assert serving_dtype("cuda:0") == "bfloat16" and serving_dtype("cpu") == "float32"
    model = load_model("sequence", tiny_classifier)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    timed = measure_latency(model, seq_len=8, runs=5, warmup=0, device="cpu", dtype="bfloat16")
    assert timed.dtype == "bfloat16" and timed.runs == 5
    # The caller's model was neither rounded to bf16 nor converted.
    after = model.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], before[k]) for k in before)
    assert measure_latency(model, seq_len=8, runs=5, warmup=0, device="cpu").dtype == "float32"
