"""`zhkd evaluate` refuses bad input with one line naming the cause, before any scoring or timing."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest
from conftest import run_zhkd, tiny_checkpoint, write_jsonl

from zhkd.distill.errors import DistillError
from zhkd.errors import ZhkdError
from zhkd.pipelines.corpora import load_corpus


@pytest.fixture(scope="module")
def sentiment_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("evaluate-errors") / "test.jsonl",
                       islice(load_corpus("chnsenti", "test"), 8))


def refused(*args) -> str:
    """The one-line error of a refused run (progress lines may come before it)."""
    result = run_zhkd("evaluate", *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("zhkd evaluate: error:") or "invalid choice" in last, result.stderr
    return last


def test_missing_model_directory(tmp_path, sentiment_file):
    message = refused("--task", "classification", "--model", tmp_path / "nowhere", "--test", sentiment_file,
                      "--output", tmp_path / "out")
    assert "no model directory at" in message and "nowhere" in message
    assert not (tmp_path / "out").exists()


def test_directory_without_a_model(tmp_path, sentiment_file):
    (tmp_path / "empty").mkdir()
    message = refused("--task", "classification", "--model", tmp_path / "empty", "--test", sentiment_file,
                      "--output", tmp_path / "out")
    assert "not a model directory" in message


def test_time_budget_must_be_positive(tmp_path, tiny_classifier, sentiment_file):
    message = refused("--task", "classification", "--model", tiny_classifier, "--test", sentiment_file,
                      "--output", tmp_path / "out", "--max-seconds", "0")
    assert "--max-seconds must be positive" in message
    assert not (tmp_path / "out").exists()


def test_unknown_task(tmp_path, tiny_classifier, sentiment_file):
    message = refused("--task", "summarise", "--model", tiny_classifier, "--test", sentiment_file,
                      "--output", tmp_path / "out")
    assert "summarise" in message


def test_test_label_unknown_to_the_model(tmp_path, tiny_classifier):
    path = write_jsonl(tmp_path / "neutral.jsonl", [{"text": "还行吧", "label": "neutral"}])
    message = refused("--task", "classification", "--model", tiny_classifier, "--test", path,
                      "--output", tmp_path / "out")
    assert "neutral" in message


def test_student_labels_differ_from_the_teacher(tmp_path, tiny_classifier, sentiment_file):
    other = tiny_checkpoint(tmp_path / "other", "sequence", labels=["bad", "good"], hidden=16)
    message = refused("--task", "classification", "--teacher", tiny_classifier, "--model", f"s={other}",
                      "--test", sentiment_file, "--output", tmp_path / "out")
    assert "model 's' has labels bad, good" in message and "negative, positive" in message


def test_ner_file_for_a_classification_task(tmp_path, tiny_classifier):
    path = write_jsonl(tmp_path / "ner.jsonl", islice(load_corpus("pd98-ner", "test"), 2))
    message = refused("--task", "classification", "--model", tiny_classifier, "--test", path,
                      "--output", tmp_path / "out")
    assert "no field 'text'" in message and "ner.jsonl:1" in message


def test_two_models_with_one_name(tmp_path, tiny_classifier, sentiment_file):
    message = refused("--task", "classification", "--model", f"a={tiny_classifier}", "--model", f"a={tiny_classifier}",
                      "--test", sentiment_file, "--output", tmp_path / "out")
    assert "two models are named 'a'" in message


def test_library_refuses_unknown_task_and_unknown_reference(tmp_path, tiny_classifier):
    from zhkd.distill.evaluate import evaluate_models

    rows = [{"text": "好", "label": 1}]
    with pytest.raises(ZhkdError, match="unknown task 'sentiment'"):
        evaluate_models("sentiment", {"m": tiny_classifier}, rows, ["negative", "positive"], tmp_path)
    with pytest.raises(DistillError, match="unknown shape 'bert-huge'"):
        evaluate_models("classification", {"m": tiny_classifier}, rows, ["negative", "positive"], tmp_path,
                        reference="bert-huge")
    with pytest.raises(DistillError, match="gold label"):
        evaluate_models("classification", {"m": tiny_classifier}, [{"text": "好", "label": None}],
                        ["negative", "positive"], tmp_path)
