"""`zhkd demo --scale tiny`: the whole product end to end, and the report's figures traced to measurements."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from conftest import run_zhkd

from zhkd.demo import DEMO_TASKS, SCALES, TEACHER_CANDIDATES
from zhkd.demo_readme import BEGIN, END, publish
from zhkd.demo_report import ABLATION, COMPARISONS, FULL_RECIPE, split_steps, student_name
from zhkd.distill.stats import mean_interval, paired_difference, verdict

TINY = SCALES["tiny"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    install = out.parent / "install.json"  # beside the demo's directory: its rerun hands it again, as make does
    install.write_text('{"seconds": 95, "finished": "2026-01-01T00:00:00Z"}')
    result = run_zhkd("demo", "--scale", "tiny", "--output", out, "--install-record", install, timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result


def test_report_has_every_ablation_row_and_seed_for_both_tasks(demo):
    out, result = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    markdown = (out / "report.md").read_text("utf-8")
    assert [t["task"] for t in report["tasks"]] == ["classification", "ner"]
    seeds = list(range(TINY.seeds))
    expected = {student_name(row.name, seed) for row in ABLATION for seed in seeds} | {"teacher", "baseline"}
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


def test_every_ablation_row_took_the_same_number_of_optimiser_steps(demo):
    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    for task in report["tasks"]:
        counts = set()
        for row in task["ablation"]["rows"]:
            for seed, path in task["students"][row["name"]].items():
                log = [json.loads(line) for line in (Path(path) / "log.jsonl").read_text("utf-8").splitlines()]
                steps = sum(e["steps"] for e in log if e["event"] == "stage_end")  # read from the student's own log
                counts.add(steps)
                assert row["logged_steps"][task["ablation"]["seeds"].index(int(seed))] == steps
            assert row["logged_steps"] == [TINY.student_steps] * TINY.seeds
            assert sum(row["stage_steps"].values()) == row["total_steps"] == TINY.student_steps
        assert counts == {TINY.student_steps}
    prepost = next(r for r in report["tasks"][0]["ablation"]["rows"] if r["name"] == FULL_RECIPE)
    assert set(prepost["stage_steps"]) == {"pre", "kd", "post"}  # the budget split across its stages


def test_report_carries_seeds_per_seed_scores_and_intervals_recomputable_from_them(demo):
    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    for task in report["tasks"]:
        table = task["ablation"]
        models = {e["name"]: e for e in task["evaluation"]["models"]}
        assert table["seed_count"] == TINY.seeds == len(table["seeds"])
        by_name = {}
        for row in table["rows"]:
            scores = [models[student_name(row["name"], s)]["score"] for s in table["seeds"]]
            assert row["scores"] == scores
            interval = mean_interval(scores)
            assert row["score"]["mean"] == pytest.approx(interval.mean)
            assert row["score"]["half_width"] == pytest.approx(interval.half_width)
            assert row["score"]["n"] == TINY.seeds and row["score"]["confidence"] == 0.95
            by_name[row["name"]] = scores
        assert [(c["a"], c["b"]) for c in table["comparisons"]] == list(COMPARISONS)
        for comparison in table["comparisons"]:
            difference = paired_difference(by_name[comparison["a"]], by_name[comparison["b"]])
            assert comparison["difference"]["mean"] == pytest.approx(difference.mean)
            assert comparison["verdict"] == verdict(difference)


def test_summary_figures_are_ratios_of_recorded_values(demo):
    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    for task, summary in zip(report["tasks"], report["summary"], strict=True):
        models = {e["name"]: e for e in task["evaluation"]["models"]}
        teacher, reference = models["teacher"], task["evaluation"]["reference"]
        students = [models[student_name(FULL_RECIPE, s)] for s in task["ablation"]["seeds"]]
        p50 = statistics.median(e["latency"]["cpu"]["batch_1"]["p50_ms"] for e in students)
        assert summary["speedup_vs_teacher"] == pytest.approx(teacher["latency"]["cpu"]["batch_1"]["p50_ms"] / p50)
        assert summary["speedup_vs_bert_base"] == pytest.approx(
            reference["latency"]["cpu"]["batch_1"]["p50_ms"] / p50)
        assert summary["compression_vs_teacher"] == pytest.approx(teacher["parameters"] / students[0]["parameters"])
        assert summary["compression_vs_bert_base"] == pytest.approx(reference["parameters"] / students[0]["parameters"])
        assert summary["student_score"] == pytest.approx(statistics.fmean(e["score"] for e in students))
        assert summary["student_scores"] == [e["score"] for e in students]
        assert summary["teacher_score"] == teacher["score"] and summary["seeds"] == TINY.seeds
        if teacher["score"]:
            assert summary["pct_of_teacher"] == pytest.approx(100 * summary["student_score"] / teacher["score"])
        else:  # a tiny teacher can score 0 (NER F1): no percentage rather than a division by zero
            assert summary["pct_of_teacher"] is None
        selection = task["student_selection"]
        chosen = next(c for c in selection["candidates"] if c["shape"] == selection["chosen"])
        if selection["target_met"]:
            assert chosen["meets"]
        else:  # nothing met the target on this machine: the fastest is kept
            assert chosen["speedup"] == max(c["speedup"] for c in selection["candidates"])


def _teacher_arguments(command: str) -> list[str]:
    """The teacher paths a recorded `zhkd` command hands on (`--teacher P`, or evaluate's `--teacher NAME=P`)."""
    argv = command.split()
    return [argv[i + 1].split("=", 1)[-1] for i, arg in enumerate(argv) if arg == "--teacher"]


def test_the_teacher_is_chosen_among_two_candidates_and_every_later_step_uses_it(demo):
    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    names = [step["step"] for step in report["steps"]]
    for task, spec in zip(report["tasks"], DEMO_TASKS, strict=True):
        task_dir = out / task["task"]
        choice = task["teacher_choice"]
        assert choice == json.loads((task_dir / "teacher_choice.json").read_text("utf-8"))
        assert [(c["name"], c["path"]) for c in choice["candidates"]] == [
            (c.name, str(task_dir / c.directory)) for c in TEACHER_CANDIDATES]
        assert choice["dev"]["rows"] == TINY.dev and choice["baseline"]["margin"] == spec.teacher_margin
        chosen = choice["chosen"]["path"]
        assert chosen in {c["path"] for c in choice["candidates"]} and task["teacher"] == chosen
        # every candidate was trained, then chosen between, before anything used the teacher
        order = [names.index(f"{task['task']}: teacher candidate {c.name}") for c in TEACHER_CANDIDATES]
        choose = names.index(f"{task['task']}: choose the teacher")
        assert max(order) < choose < names.index(f"{task['task']}: soft labels with augmentation")
        later = [s for s in report["steps"][choose + 1:] if s["step"].startswith(f"{task['task']}: ")
                 and s["command"]]
        handed = [path for s in later for path in _teacher_arguments(s["command"])]
        assert len(handed) == 2 + len(ABLATION) * TINY.seeds + 1  # two builds, every student, the evaluation
        assert set(handed) == {chosen}
        for dataset in ("soft-aug", "soft-noaug"):
            manifest = json.loads((task_dir / dataset / "manifest.json").read_text("utf-8"))
            assert manifest["teacher"]["name"] == chosen
        for by_seed in task["students"].values():
            for path in by_seed.values():
                log = [json.loads(line) for line in (Path(path) / "log.jsonl").read_text("utf-8").splitlines()]
                assert next(e for e in log if e["event"] == "distill")["teacher"] == chosen


def test_the_report_shows_the_teacher_choice_as_select_teacher_recorded_it(demo, tmp_path):
    from zhkd.demo_report import teacher_choice_sentence

    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    markdown = (out / "report.md").read_text("utf-8")
    sections = markdown.split("### Teacher selection")[1:]
    assert len(sections) == len(report["tasks"])
    for task, section in zip(report["tasks"], sections, strict=True):
        choice = task["teacher_choice"]
        section = section.split("### Student selection")[0]  # the teacher's section comes first
        assert choice["strategy"] in section and choice["baseline"]["source"] in section
        for candidate in choice["candidates"]:
            mark = "yes" if candidate["name"] == choice["chosen"]["name"] else ""
            assert f"| {candidate['name']} | {candidate['score']:.4f} | {candidate['ece']:.4f} | {mark} |" in section
        for reason in choice["reasons"]:
            assert f"\n- {reason}\n" in section
        sentence = teacher_choice_sentence(choice)
        verdict = "beats" if choice["baseline"]["beaten"] else "does not beat"
        assert f"chose the teacher {choice['chosen']['name']} " in sentence and f"on dev it {verdict} the" in sentence
        assert sentence in markdown  # in the reading, which the README copies
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n{END}\n", encoding="utf-8")
    publish(out / "report.json", readme)
    assert all(teacher_choice_sentence(t["teacher_choice"]) in readme.read_text("utf-8") for t in report["tasks"])


def test_a_given_teacher_is_used_as_is_no_candidate_is_trained_and_the_report_says_so(demo, tmp_path,
                                                                                      tiny_classifier):
    from zhkd.demo import Steps, choose_teacher, render_report

    steps = Steps(tmp_path / "steps.jsonl")
    task_dir = tmp_path / "classification"
    data = {split: tmp_path / f"{split}.jsonl" for split in ("train", "dev")}  # never read: nothing is trained
    teacher, choice = choose_teacher(DEMO_TASKS[0], TINY, task_dir, data, tmp_path / "mlm", steps,
                                     str(tiny_classifier), 0, [])
    assert (teacher, choice) == (str(tiny_classifier), None)
    assert steps.records == [] and not task_dir.exists() and not (tmp_path / "steps.jsonl").exists()
    # the report of a demo whose sentiment teacher was given: that task's section says so, the other's is kept
    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    report["tasks"][0]["teacher_choice"] = None
    markdown = render_report(report)
    given, chosen = markdown.split("### Teacher selection")[1:]
    assert "The teacher was given (`zhkd demo --teacher`): no candidates were trained" in given
    assert "**Sentiment (chnsenti).** The teacher was given (`zhkd demo --teacher`), not chosen" in markdown
    assert all(f"- {reason}" in chosen for reason in report["tasks"][1]["teacher_choice"]["reasons"])


def test_report_says_the_teacher_is_not_bert_base_beside_the_papers_ratios(demo):
    out, _ = demo
    markdown = (out / "report.md").read_text("utf-8")
    assert "The teacher here is not BERT-base" in markdown and "6.7x / 13.6x" in markdown


@pytest.mark.parametrize(("total", "stages", "expected"), [
    (120, ["pre"], {"pre": 120}),
    (120, ["pre", "kd", "post"], {"pre": 30, "kd": 60, "post": 30}),
    (10, ["pre", "kd", "post"], {"pre": 2, "kd": 6, "post": 2}),
    (7, ["pre", "kd"], {"pre": 2, "kd": 5}),
])
def test_a_students_budget_is_split_across_its_stages_without_losing_a_step(total, stages, expected):
    parts = split_steps(total, stages, {"pre": 0.25, "kd": 0.5, "post": 0.25})
    assert parts == expected and sum(parts.values()) == total


def test_a_speed_target_no_shape_meets_keeps_the_fastest_and_says_so(tiny_classifier):
    from dataclasses import replace

    from zhkd.demo import choose_student

    selection = choose_student(tiny_classifier, "classification", replace(TINY, target_speedup=1e6, eval_runs=1))
    assert selection["target_met"] is False
    assert selection["chosen"] == max(selection["candidates"], key=lambda c: c["speedup"])["shape"]
    assert not any(c["meets"] for c in selection["candidates"])


def test_a_rerun_continues_the_demo_and_keeps_what_the_user_added(demo):
    out, _ = demo
    (out / "my-notes.txt").write_text("mine")
    (out / "classification" / "notes.txt").write_text("mine too")
    student = out / "classification" / "students" / student_name(ABLATION[-1].name, 0) / "model.safetensors"
    weights = student.read_bytes()
    kept = {path: path.read_bytes() for task in ("classification", "ner")
            for path in [out / task / "teacher_choice.json",
                         *(out / task / c.directory / "model.safetensors" for c in TEACHER_CANDIDATES)]}
    first = json.loads((out / "report.json").read_text("utf-8"))
    result = run_zhkd("demo", "--scale", "tiny", "--output", out, "--install-record", out.parent / "install.json",
                      timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "already complete" in result.stderr and "already built" in result.stderr  # no step ran again
    assert result.stderr.count("already chosen") == 2  # neither task's teacher chosen again
    assert student.read_bytes() == weights
    assert all(path.read_bytes() == data for path, data in kept.items())  # no candidate retrained
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


def test_a_broken_install_record_is_one_line_error_and_nothing_is_made(tmp_path):
    record = tmp_path / "install.json"
    record.write_text('{"seconds": 80}')
    result = run_zhkd("demo", "--scale", "tiny", "--output", tmp_path / "out", "--install-record", record)
    assert result.returncode == 2 and "not an install record" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite_a_directory_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = run_zhkd("demo", "--scale", "tiny", "--output", tmp_path)
    assert result.returncode == 2 and "not made by zhkd demo" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_readme_account_is_copied_from_the_report(demo, tmp_path):
    out, _ = demo
    readme = tmp_path / "README.md"
    readme.write_text(f"# zhkd\n\n{BEGIN}\nold table\n{END}\n\n## Layout\n", encoding="utf-8")
    publish(out / "report.json", readme)
    once = readme.read_text("utf-8")
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert "old table" not in once and once.startswith("# zhkd\n") and once.endswith(f"{END}\n\n## Layout\n")
    assert report["command"] in once and report["date"] in once and report["machine"]["cpu"] in once
    assert f"{report['total_seconds'] / 60:.1f} minutes" in once
    # the install record handed to the demo: 95 s, finished long before the run
    assert report["install"]["seconds"] == 95 and "installed earlier, in 1.6 minutes" in once
    for row in report["summary"]:
        assert f"| {row['task']} ({row['metric']}) | {row['baseline_score']:.4f} | {row['teacher_score']:.4f} |" in once
        verb = "reaches" if row["speedup_vs_teacher"] >= 6.7 else "falls short of"
        assert f"{verb} its 6.7x speed-up over the teacher" in once
    for row in ABLATION:  # the ablation of both tasks
        assert once.count(f"| {row.title} |") == 2
    for task in report["tasks"]:  # the reading: one generated sentence per comparison, its verdict from the data
        titles = {r.name: r.title for r in ABLATION}
        for comparison in task["ablation"]["comparisons"]:
            a, b = titles[comparison["a"]], titles[comparison["b"]]
            expected = {"gain": f"{a} beats {b} (", "loss": f"{a} trails {b} (",
                        "none": f"{a} against {b}: no measurable difference ("}[comparison["verdict"]]
            assert expected in once
    publish(out / "report.json", readme)
    assert readme.read_text("utf-8") == once  # publishing again changes nothing


def test_the_classical_baseline_trained_on_the_same_rows_gets_a_row_and_a_sentence(demo):
    """`zhkd evaluate --baseline` in the demo: trained on the demo's train rows, scored on its test rows."""
    from zhkd.demo_report import ablation_table, reading, summary_row

    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    for task in report["tasks"]:
        baseline = next(e for e in task["evaluation"]["models"] if e.get("role") == "baseline")
        trained_on = len(Path(task["data"]["train"]).read_text("utf-8").splitlines())
        assert task["evaluation"]["baseline"]["train_rows"] == trained_on == TINY.train
        assert task["ablation"]["baseline"]["score"] == baseline["score"] == summary_row(task)["baseline_score"]
        assert f"the classical baseline on the same rows {baseline['score']:.4f}" in reading(task)
        (row,) = [line for line in ablation_table(task).splitlines()
                  if line.startswith(f"| classical baseline ({baseline['name']}) |")]
        assert f"| {baseline['score']:.4f} |" in row


def test_a_run_of_another_scale_fills_its_own_block_beside_the_small_one(demo, tmp_path):
    from zhkd.demo_readme import markers
    from zhkd.pipelines.errors import PipelineError

    out, _ = demo
    report = json.loads((out / "report.json").read_text("utf-8"))
    medium = tmp_path / "medium.json"
    medium.write_text(json.dumps({**report, "scale": "medium"}), encoding="utf-8")
    begin, end = markers("medium")
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\nsmall table\n{END}\n", encoding="utf-8")
    with pytest.raises(PipelineError, match="markers for the medium scale"):
        publish(medium, readme)
    readme.write_text(f"{BEGIN}\nsmall table\n{END}\n\n{begin}\nthe previous medium run\n{end}\n", encoding="utf-8")
    publish(medium, readme)
    text = readme.read_text("utf-8")
    assert text.startswith(f"{BEGIN}\nsmall table\n{END}\n") and "the previous medium run" not in text
    assert report["command"] in text.split(begin)[1]


def test_the_readmes_medium_block_is_the_committed_medium_reports_account():
    """The recorded `medium` run (issue 11, item 5): its report.json is committed under docs/, and the
    README's block for it is exactly what `make readme OUT=docs/demo-medium` renders from that file."""
    from zhkd.demo_readme import markers, section

    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "docs" / "demo-medium" / "report.json").read_text("utf-8"))
    assert report["scale"] == "medium" and report["command"].startswith("zhkd demo --scale medium")
    begin, end = markers("medium")
    readme = (root / "README.md").read_text("utf-8")
    assert readme.split(begin)[1].split(end)[0] == f"\n{section(report)}\n"


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
