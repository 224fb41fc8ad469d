"""`zhkd demo --scale tiny`: the whole product end to end, and the report's figures traced to measurements."""

from __future__ import annotations

import json

import pytest
from conftest import run_zhkd

from zhkd.demo import ABLATION
from zhkd.demo_readme import BEGIN, END, publish


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_zhkd("demo", "--scale", "tiny", "--output", out, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result


def test_report_has_every_ablation_row_for_both_tasks(demo):
    out, result = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    markdown = (out / "report.md").read_text("utf-8")
    assert [t["task"] for t in report["tasks"]] == ["classification", "ner"]
    expected = {row.name for row in ABLATION} | {"teacher"}
    for task in report["tasks"]:
        evaluation = task["evaluation"]
        assert {e["name"] for e in evaluation["models"]} == expected
        for entry in evaluation["models"]:
            for metric in evaluation["metrics"]:
                assert 0.0 <= entry["scores"][metric] <= 1.0
        assert (out / task["task"] / "evaluation" / "evaluation.png").stat().st_size > 0
        assert (out / task["task"] / "soft-aug" / "COMPLETED").exists()
    for row in ABLATION:  # one ablation-table row per task
        assert markdown.count(f"| {row.title} |") == 2
    assert "Summary against the paper" in markdown and "teacher" in result.stdout


def test_speedup_and_compression_come_from_measured_values(demo):
    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    for task, summary in zip(report["tasks"], report["summary"], strict=True):
        models = {e["name"]: e for e in task["evaluation"]["models"]}
        teacher, reference = models["teacher"], task["evaluation"]["reference"]
        student = models[ABLATION[-1].name]
        p50 = {name: e["latency"]["cpu"]["batch_1"]["p50_ms"] for name, e in models.items()}
        assert summary["speedup_vs_teacher"] == pytest.approx(p50["teacher"] / p50[student["name"]], rel=1e-6)
        assert summary["speedup_vs_bert_base"] == pytest.approx(
            reference["latency"]["cpu"]["batch_1"]["p50_ms"] / p50[student["name"]], rel=1e-6)
        assert summary["compression_vs_teacher"] == pytest.approx(teacher["parameters"] / student["parameters"])
        assert summary["compression_vs_bert_base"] == pytest.approx(reference["parameters"] / student["parameters"])
        if teacher["score"]:
            assert summary["pct_of_teacher"] == pytest.approx(100 * student["score"] / teacher["score"])
        else:  # a tiny teacher can score 0 (NER F1): no percentage rather than a division by zero
            assert summary["pct_of_teacher"] is None
        chosen = task["student_selection"]["chosen"]
        assert next(c for c in task["student_selection"]["candidates"] if c["shape"] == chosen)["meets"]


def test_a_rerun_continues_the_demo_and_keeps_what_the_user_added(demo):
    out, _ = demo
    (out / "my-notes.txt").write_text("mine")
    (out / "classification" / "notes.txt").write_text("mine too")
    student = out / "classification" / "students" / ABLATION[-1].name / "model.safetensors"
    weights = student.read_bytes()
    first = json.loads((out / "report.json").read_text("utf-8"))
    result = run_zhkd("demo", "--scale", "tiny", "--output", out, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "already complete" in result.stderr and "already built" in result.stderr  # no step ran again
    assert student.read_bytes() == weights
    again = json.loads((out / "report.json").read_text("utf-8"))
    assert again["summary"] == first["summary"]  # the same models, evaluated once
    assert again["total_seconds"] >= first["total_seconds"]  # each step's time over both runs, not the rerun's
    assert [s["command"] for s in again["steps"]] == [s["command"] for s in first["steps"]]
    assert (out / "my-notes.txt").read_text() == "mine" and (out / "classification" / "notes.txt").read_text() == \
        "mine too"
    other = run_zhkd("demo", "--scale", "small", "--output", out)
    assert other.returncode == 2 and "holds a demo with other settings (scale: 'tiny' -> 'small')" in other.stderr


def test_bad_teacher_argument_is_one_line_error(tmp_path):
    result = run_zhkd("demo", "--scale", "tiny", "--output", tmp_path, "--teacher", "sentiment")
    assert result.returncode == 2
    assert "TASK=PATH" in result.stderr and "Traceback" not in result.stderr


def test_refuses_to_overwrite_a_directory_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = run_zhkd("demo", "--scale", "tiny", "--output", tmp_path)
    assert result.returncode == 2 and "not made by zhkd demo" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_readme_table_is_copied_from_the_report(demo, tmp_path):
    out, _ = demo
    readme = tmp_path / "README.md"
    readme.write_text(f"# zhkd\n\n{BEGIN}\nold table\n{END}\n\n## Layout\n", encoding="utf-8")
    publish(out / "report.json", readme)
    once = readme.read_text("utf-8")
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert "old table" not in once and once.startswith("# zhkd\n") and once.endswith(f"{END}\n\n## Layout\n")
    assert report["command"] in once and report["date"] in once and report["machine"]["cpu"] in once
    for row in report["summary"]:
        assert f"| {row['task']} ({row['metric']}) | {row['teacher_score']:.4f} |" in once
    for row in ABLATION:  # the ablation of both tasks
        assert once.count(f"| {row.title} |") == 2
    publish(out / "report.json", readme)
    assert readme.read_text("utf-8") == once  # publishing again changes nothing


def test_readme_without_markers_is_refused(demo, tmp_path):
    from zhkd.pipelines.errors import PipelineError

    out, _ = demo
    readme = tmp_path / "README.md"
    readme.write_text("# zhkd\n", encoding="utf-8")
    with pytest.raises(PipelineError, match="markers"):
        publish(out / "report.json", readme)
    assert readme.read_text("utf-8") == "# zhkd\n"


def test_readme_copy_without_a_report_is_one_line_error(tmp_path, capsys):
    from zhkd.demo_readme import main

    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n{END}\n", encoding="utf-8")
    assert main([str(tmp_path / "missing.json"), str(readme)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("demo_readme: error:") and "missing.json" in err and "\n" not in err
    assert main([str(readme)]) == 2 and "usage:" in capsys.readouterr().err
    assert readme.read_text("utf-8") == f"{BEGIN}\n{END}\n"
