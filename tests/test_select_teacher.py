"""`zhkd select-teacher`: the paper's choice (best dev score, ties to the better calibrated), its reasons,
and the classical baseline it is set against, on constant classifiers whose figures are known by hand."""

from __future__ import annotations

import json
import math

import pytest
from conftest import constant_classifier, run_zhkd, write_jsonl

# Three positive reviews and one negative: "always positive" scores 0.75, "always negative" 0.25.
DEV = [{"id": f"d{i}", "text": text, "label": label} for i, (text, label) in enumerate(
    [("很好", "positive"), ("不错", "positive"), ("喜欢", "positive"), ("太差", "negative")])]


@pytest.fixture(scope="module")
def candidates(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("candidates")
    return {
        "sure": constant_classifier(folder / "sure", 1, hidden=16, bias=3.0),  # positive at p = 0.953
        "calm": constant_classifier(folder / "calm", 1, hidden=16, bias=1.0),  # positive at p = 0.731
        "wrong": constant_classifier(folder / "wrong", 0, hidden=16, bias=1.0),
        "dev": write_jsonl(folder / "dev.jsonl", DEV),
    }


def select(candidates, *names, extra=()):
    return run_zhkd("select-teacher", "--task", "classification", "--dev", candidates["dev"],
                    *(a for n in names for a in ("--candidate", f"{n}={candidates[n]}")), *extra)


def confidence(bias: float) -> float:
    return 1 / (1 + math.exp(-bias))


def test_the_best_dev_score_is_chosen_and_the_reasons_say_by_how_much(candidates, tmp_path):
    out = tmp_path / "choice.json"
    result = select(candidates, "wrong", "calm", extra=("--output", out))
    assert result.returncode == 0, result.stderr
    choice = json.loads(out.read_text("utf-8"))
    assert choice["chosen"] == {"name": "calm", "path": str(candidates["calm"])}
    figures = {c["name"]: c for c in choice["candidates"]}
    assert figures["calm"]["score"] == 0.75 and figures["wrong"]["score"] == 0.25
    # One confidence for every row: ECE = |accuracy - confidence|.
    assert figures["calm"]["ece"] == pytest.approx(abs(0.75 - confidence(1.0)))
    assert choice["reasons"] == ["chosen calm: the highest dev accuracy, 0.7500, +0.5000 over the next "
                                 "(wrong, 0.2500)"]
    assert choice["baseline"] is None and choice["dev"] == {"path": str(candidates["dev"]), "rows": 4}
    assert "calm" in result.stdout and "<- chosen" in result.stdout and choice["reasons"][0] in result.stdout


def test_a_tie_goes_to_the_better_calibrated_candidate(candidates, tmp_path):
    out = tmp_path / "choice.json"
    result = select(candidates, "sure", "calm", extra=("--output", out))
    assert result.returncode == 0, result.stderr
    choice = json.loads(out.read_text("utf-8"))
    # Both say "positive" everywhere (0.75); calm's confidence 0.731 is nearer 0.75 than sure's 0.953.
    assert choice["chosen"]["name"] == "calm"
    assert choice["reasons"][0].startswith("chosen calm: dev accuracy 0.7500 ties with sure (within 0); the tie "
                                           "goes to the lower expected calibration error: 0.0189 against sure 0.2026")


def test_the_choice_is_set_against_a_given_baseline_score_and_margin(candidates, tmp_path):
    out = tmp_path / "choice.json"
    result = select(candidates, "wrong", "calm", extra=("--baseline-score", "0.7", "--margin", "0.02",
                                                       "--output", out))
    assert result.returncode == 0, result.stderr
    baseline = json.loads(out.read_text("utf-8"))["baseline"]
    assert baseline["beaten"] is True and baseline["gap"] == pytest.approx(0.05)
    assert ("calm beats the classical baseline: dev accuracy 0.7500 against 0.7000 (given), +0.0500 "
            "(at least +0.0200 asked)") in result.stdout
    result = select(candidates, "wrong", "calm", extra=("--baseline-score", "0.74", "--margin", "0.02"))
    assert "calm does not beat the classical baseline" in result.stdout and result.returncode == 0


def test_the_baseline_can_be_trained_on_the_train_rows_and_scored_on_dev(candidates, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", DEV * 5)  # it sees the dev texts: it must get all four right
    out = tmp_path / "choice.json"
    result = select(candidates, "wrong", "calm", extra=("--baseline-train", train, "--output", out))
    assert result.returncode == 0, result.stderr
    baseline = json.loads(out.read_text("utf-8"))["baseline"]
    assert baseline["score"] == 1.0 and baseline["beaten"] is False
    assert baseline["source"].startswith("tfidf-logreg C=") and baseline["record"]["train_rows"] == 20


@pytest.mark.parametrize(("names", "extra", "message"), [
    (("calm",), (), "give at least two --candidate"),
    (("calm", "wrong"), ("--margin", "-1"), "must not be negative"),
    (("calm", "calm"), (), "two candidates are named 'calm'"),
    (("calm", "wrong"), ("--baseline-score", "0.5", "--baseline-train", "x.jsonl"), "not allowed with"),
])
def test_mistakes_are_refused_in_one_line(candidates, names, extra, message, capsys):
    from zhkd.cli import main

    argv = ["select-teacher", "--task", "classification", "--dev", str(candidates["dev"]),
            *(a for n in names for a in ("--candidate", f"{n}={candidates[n]}")), *extra]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses a conflict itself, with its usage line
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("zhkd select-teacher: error:")


def test_the_output_never_replaces_a_users_file_and_replaces_its_own_only_with_overwrite(candidates, tmp_path):
    users = tmp_path / "notes.json"
    users.write_text('{"mine": true}\n', encoding="utf-8")
    for extra in (("--output", users), ("--output", users, "--overwrite"), ("--output", candidates["dev"])):
        result = select(candidates, "wrong", "calm", extra=extra)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert users.read_text("utf-8") == '{"mine": true}\n'
    assert candidates["dev"].read_text("utf-8").count("\n") == len(DEV)

    out = tmp_path / "choice.json"
    assert select(candidates, "wrong", "calm", extra=("--output", out)).returncode == 0
    again = select(candidates, "sure", "calm", extra=("--output", out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert select(candidates, "sure", "calm", extra=("--output", out, "--overwrite")).returncode == 0
    assert {c["name"] for c in json.loads(out.read_text("utf-8"))["candidates"]} == {"sure", "calm"}


def test_one_model_given_twice_under_two_names_is_refused(candidates, capsys):
    from zhkd.cli import main

    code = main(["select-teacher", "--task", "classification", "--dev", str(candidates["dev"]),
                 "--candidate", f"a={candidates['calm']}", "--candidate", f"b={candidates['calm']}"])
    err = capsys.readouterr().err
    assert code == 2 and f"{candidates['calm']} is given twice" in err and "Traceback" not in err
