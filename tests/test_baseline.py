"""The classical baseline: chosen by label kind, right on toy sets whose answer is known, tuned on dev,
and reported like every other model (score, latency, size, parameters)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import NER_LABELS, SENTIMENT_LABELS, run_zhkd, write_jsonl

from zhkd.distill.baseline import (
    BASELINES,
    BaselineUnavailable,
    CharWindowCRF,
    TfidfLogisticRegression,
    baseline_class,
    train_baseline,
    window_features,
)
from zhkd.distill.evaluate import LatencySettings, evaluate_models, row_length
from zhkd.distill.predict import read_task_rows
from zhkd.tasks import MULTILABEL, TASKS, TaskSpec

FILLER = "我们今天去了那里看见很多东西然后回家吃饭睡觉"
FAST = LatencySettings(runs=3, warmup=0, throughput_batch=2)


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """Filler text with one cue character: 好 always positive, 差 always negative (separable)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        words.insert(rng.randrange(len(words) + 1), "好" if label else "差")
        rows.append({"id": f"s{seed}-{i}", "text": "".join(words), "label": SENTIMENT_LABELS[label]})
    return rows


PEOPLE, PLACES = ["张三", "李四", "王五"], ["北京", "上海"]


def ner_rows(n: int, seed: int) -> list[dict]:
    """Names and places from fixed lists inside filler: every entity's characters are its own."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(1, 3)):
            filler = [rng.choice(FILLER) for _ in range(rng.randint(1, 4))]
            tokens += filler
            tags += ["O"] * len(filler)
            entity, etype = (rng.choice(PEOPLE), "PER") if rng.random() < 0.5 else (rng.choice(PLACES), "LOC")
            tokens += list(entity)
            tags += [f"B-{etype}", f"I-{etype}"]
        rows.append({"id": f"n{seed}-{i}", "tokens": tokens, "tags": tags})
    return rows


def pair_rows(n: int, seed: int) -> list[dict]:
    """The label is written in the second text only (是 same, 否 different): the first text says nothing."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        first = "".join(rng.choice(FILLER) for _ in range(6))
        second = "".join(rng.choice(FILLER) for _ in range(5)) + ("是" if label else "否")
        rows.append({"id": f"p{seed}-{i}", "text": first, "text_pair": second, "label": ["different", "same"][label]})
    return rows


def as_task_rows(tmp_path: Path, name: str, rows: list[dict], task: str, labels: list[str]) -> list[dict]:
    return read_task_rows(write_jsonl(tmp_path / f"{name}.jsonl", rows), task, label_names=labels)[0]


def test_the_baseline_is_chosen_by_label_kind_not_by_task_name(monkeypatch):
    assert baseline_class("classification") is baseline_class("pair") is TfidfLogisticRegression
    assert baseline_class("ner") is CharWindowCRF
    monkeypatch.setitem(TASKS, "topics", TaskSpec(name="topics", summary="any labels", fields=("text",),
                                                  label_kind=MULTILABEL, label_field="labels",
                                                  metrics=("micro_f1",), headline="micro_f1"))
    with pytest.raises(BaselineUnavailable) as err:
        baseline_class("topics")
    assert str(err.value) == ("no classical baseline for task topics (label kind multilabel); "
                              "evaluating without one")


def test_window_features_see_two_characters_either_side():
    first, last = window_features(list("北京好"))[0], window_features(list("北京好"))[2]
    assert first == {"bias": "1", "c-2": "^", "c-1": "^", "c+0": "北", "c+1": "京", "c+2": "好",
                     "c-2-1": "^^", "c-1+0": "^北", "c+0+1": "北京", "c+1+2": "京好"}
    assert last["c+1"] == last["c+2"] == "$" and last["c-2-1"] == "北京"


def test_sentiment_baseline_separates_a_toy_set_and_reports_like_a_model(tmp_path):
    train = as_task_rows(tmp_path, "train", sentiment_rows(80, 0), "classification", SENTIMENT_LABELS)
    test = as_task_rows(tmp_path, "test", sentiment_rows(40, 1), "classification", SENTIMENT_LABELS)
    result = evaluate_models("classification", {}, test, SENTIMENT_LABELS, tmp_path / "report", reference="mini",
                             latency=FAST, progress=False, baseline_train=train)
    [entry] = result["models"]
    assert entry["name"] == "baseline" and entry["role"] == "baseline"
    assert entry["scores"]["accuracy"] == entry["score"] == 1.0 and entry["scores"]["macro_f1"] == 1.0
    assert result["reference"] is None  # no checkpoint to take a vocabulary from
    record = entry["baseline"]
    assert record["kind"] == "tfidf-logreg" and record["train_rows"] == 80
    assert record["settings"] == TfidfLogisticRegression.default and len(record["tuning"]) == 1  # no dev rows
    # Size: the saved files; parameters: the non-zero weights read back from them.
    from safetensors.numpy import load_file

    folder = Path(entry["path"])
    assert entry["size_bytes"] == sum((folder / f).stat().st_size for f in record["files"])
    weights = load_file(str(folder / "model.safetensors"))
    assert entry["parameters"] == int((weights["coef"] != 0).sum() + (weights["intercept"] != 0).sum())
    vocab = json.loads((folder / "vocab.json").read_text("utf-8"))
    assert weights["coef"].shape == (1, len(vocab)) and "好" in vocab
    # Latency: batch 1 on a test row of median length, with its spread; CPU only.
    speed = entry["latency"]["cpu"]
    lengths = sorted(row_length("classification", r) for r in test)
    assert speed["batch_1"]["seq_len"] == lengths[(len(lengths) - 1) // 2]
    assert speed["batch_1"]["runs"] == 3 and speed["batch_2"]["batch_size"] == 2
    assert speed["batch_1"]["p10_ms"] <= speed["batch_1"]["p50_ms"] <= speed["batch_1"]["p90_ms"]
    markdown = (tmp_path / "report" / "evaluation.md").read_text("utf-8")
    assert "| baseline (tfidf-logreg) | 1.0000 | 1.0000 |" in markdown and "Baseline: TF-IDF" in markdown


def test_ner_crf_baseline_finds_every_entity_of_a_toy_set(tmp_path):
    train = as_task_rows(tmp_path, "train", ner_rows(60, 0), "ner", NER_LABELS)
    test = as_task_rows(tmp_path, "test", ner_rows(30, 1), "ner", NER_LABELS)
    trained = train_baseline("ner", train, NER_LABELS, tmp_path / "crf")
    predicted = trained.model.predict(test)
    assert predicted == [r["tags"] for r in test]
    assert trained.files == [tmp_path / "crf" / "model.crfsuite"]
    assert trained.size_bytes == (tmp_path / "crf" / "model.crfsuite").stat().st_size
    import pycrfsuite

    tagger = pycrfsuite.Tagger()
    tagger.open(str(tmp_path / "crf" / "model.crfsuite"))  # the saved file alone is the model
    info = tagger.info()
    assert trained.model.parameters() == len(info.state_features) + len(info.transitions) > 0
    assert tagger.tag(window_features(test[0]["tokens"])) == [NER_LABELS[t] for t in test[0]["tags"]]


def test_pair_baseline_reads_the_second_text(tmp_path):
    labels = ["different", "same"]
    train = as_task_rows(tmp_path, "train", pair_rows(60, 0), "pair", labels)
    test = as_task_rows(tmp_path, "test", pair_rows(30, 1), "pair", labels)
    trained = train_baseline("pair", train, labels, tmp_path / "pair")
    assert trained.model.predict(test) == [r["label"] for r in test]


def test_dev_rows_choose_the_setting_with_the_best_dev_score(tmp_path):
    train = as_task_rows(tmp_path, "train", sentiment_rows(60, 0), "classification", SENTIMENT_LABELS)
    dev = as_task_rows(tmp_path, "dev", sentiment_rows(20, 2), "classification", SENTIMENT_LABELS)
    trained = train_baseline("classification", train, SENTIMENT_LABELS, tmp_path / "b", dev_rows=dev)
    assert [t["settings"] for t in trained.trials] == list(TfidfLogisticRegression.grid)
    best = max(t["dev_accuracy"] for t in trained.trials)
    assert trained.settings == next(t["settings"] for t in trained.trials if t["dev_accuracy"] == best)
    assert json.loads((tmp_path / "b" / "baseline.json").read_text("utf-8"))["settings"] == trained.settings


def test_a_kind_without_a_baseline_says_so_in_one_line_and_evaluates_the_rest(tmp_path, tiny_classifier,
                                                                                  monkeypatch, capsys):
    from zhkd.tasks import SEQUENCE

    monkeypatch.delitem(BASELINES, SEQUENCE)
    rows = as_task_rows(tmp_path, "rows", sentiment_rows(8, 0), "classification", SENTIMENT_LABELS)
    result = evaluate_models("classification", {"m": tiny_classifier}, rows, SENTIMENT_LABELS, tmp_path / "r",
                             reference=None, latency=FAST, progress=False, baseline_train=rows)
    said = [line for line in capsys.readouterr().err.splitlines() if "baseline" in line]
    assert said == ["evaluate: no classical baseline for task classification (label kind sequence); "
                    "evaluating without one"]
    assert [e["name"] for e in result["models"]] == ["m"] and result["baseline"]["available"] is False


def test_evaluate_command_trains_the_baseline_beside_a_teacher(tmp_path, tiny_classifier):
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", sentiment_rows(n, seed))
             for name, n, seed in (("train", 120, 0), ("dev", 20, 2), ("test", 20, 1))}
    out = tmp_path / "report"
    result = run_zhkd("evaluate", "--task", "classification", "--teacher", tiny_classifier, "--baseline",
                      "--train", files["train"], "--dev", files["dev"], "--test", files["test"], "--output", out,
                      "--reference", "none", "--runs", "3", "--warmup", "0", "--throughput-batch", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "evaluation.json").read_text("utf-8"))
    assert [e["name"] for e in report["models"]] == ["teacher", "baseline"]
    baseline = report["models"][1]
    assert baseline["score"] == 1.0 and len(baseline["baseline"]["tuning"]) == len(TfidfLogisticRegression.grid)
    teacher = report["models"][0]
    assert baseline["score_pct_of_teacher"] == pytest.approx(100 / teacher["score"])
    assert baseline["vs_teacher"]["speedup"]["cpu"] == pytest.approx(
        teacher["latency"]["cpu"]["batch_1"]["p50_ms"] / baseline["latency"]["cpu"]["batch_1"]["p50_ms"])
    assert "| baseline (tfidf-logreg) |" in result.stdout


def test_baseline_options_without_their_inputs_are_refused_in_one_line(tmp_path, tiny_classifier):
    test = write_jsonl(tmp_path / "test.jsonl", sentiment_rows(4, 1))
    common = ("evaluate", "--task", "classification", "--test", test, "--output", tmp_path / "out")
    for extra, message in ((("--baseline",), "--baseline needs --train"),
                           (("--train", test), "--train and --dev go with --baseline"),
                           ((), "nothing to evaluate")):
        result = run_zhkd(*common, *extra)
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
