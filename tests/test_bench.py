"""Every bench runs at a tiny size and records both sides of each comparison on the same inputs; the
report renders bench/README.md from the result files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402

from zhkd.augment.policy import OPTIONS  # noqa: E402


def run_bench(script: str, out: Path, *args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text("utf-8"))
    assert result["meta"]["bench"] == script.removesuffix(".py")
    assert result["meta"]["command"].startswith(f"python bench/{script}")
    assert result["summary"] and all(row["comparison"] and row["ours"] and row["peer"] for row in result["summary"])
    return result


def test_the_augment_bench_gives_both_sides_the_same_rows(tmp_path):
    if importlib.util.find_spec("nlpcda") is None:
        pytest.skip("nlpcda (the dev and bench extras) is not installed")
    # jionlp (the bench extra only) joins where it is installed: its swap is the peer of eda:swap.
    jionlp = importlib.util.find_spec("jionlp") is not None
    result = run_bench("augment_bench.py", tmp_path / "augment.json", "--sentences", "6", "--num-aug", "3",
                       "--rounds", "2", "--warm-up", "2", "--only", "synonym,homophone,eda:swap,mask",
                       *(() if jionlp else ("--skip-jionlp",)), "--mlm-sentences", "3", "--mlm-shape", "mini",
                       "--loop-budget", "600")
    peers = {(c["operator"], c["peer"]) for c in result["comparisons"]}
    assert {("synonym", "nlpcda.Similarword"), ("homophone", "nlpcda.Homophone"),
            ("eda:swap", "nlpcda.CharPositionExchange")} <= peers
    assert (("eda:swap", "jionlp.swap_char_position") in peers) == jionlp
    for c in result["comparisons"]:
        assert c["zhkd"]["inputs"] == c["peer_side"]["inputs"] == 6
        assert 0 < c["zhkd"]["change_share"] <= 1 and 0 < c["peer_side"]["change_share"] <= 1
        assert c["speed"]["rounds"] == 2 and c["speed"]["ratio"] > 0
        assert c["zhkd"]["outputs"] > 0 and c["peer_side"]["outputs"] > 0
        # zhkd's rate is calibrated on the measured rows (all six here) to the peer's share of characters
        # changed; the peer keeps zhkd's default rate. zhkd's outputs are the calibration's, so its share is.
        assert c["rate"]["peer"] == OPTIONS[c["operator"].partition(":")[0]]["p"] and 0 < c["rate"]["zhkd"] <= 1
        assert c["calibration"]["rows"] == 6 and c["calibration"]["zhkd_rate"] == c["rate"]["zhkd"]
        assert c["zhkd"]["change_share"] == pytest.approx(c["calibration"]["zhkd_share"])
        assert c["shares_matched"] == (abs(c["zhkd"]["change_share"] - c["peer_side"]["change_share"])
                                       <= c["share_tolerance"] * c["peer_side"]["change_share"])
    homophone = next(c for c in result["comparisons"] if c["peer"] == "nlpcda.Homophone")
    assert homophone["rate"]["zhkd"] > homophone["rate"]["peer"]   # at equal settings zhkd changed fewer
    assert result["solo"]["mask"]["inputs"] == 6
    mlm = result["mlm"]
    assert mlm["zhkd"]["inputs"] == mlm["tinybert_loop"]["inputs"] == 3


def test_the_label_bench_checks_logits_on_the_same_rows(tmp_path):
    result = run_bench("label_bench.py", tmp_path / "label.json", "--rows", "8", "--shape", "mini", "--rounds", "2",
                       "--sweep-rows", "4", "--sweep-rounds", "1", "--batch-sizes", "1,2", "--threads", "1",
                       "--budgets", "64,768")
    (figures,) = result["by_threads"].values()
    sides = figures["contenders"]
    assert {name: side["rows"] for name, side in sides.items()} == {
        "zhkd": 8, "zhkd_plain": 8, "pipeline": 8, "pipeline_sorted": 8}
    assert figures["forward"] in ("packed", "packed-onednn") and 0 <= figures["padded_share"] < 1
    assert figures["pipeline_best_batch_size"] in (1, 2) and set(figures["pipeline_sweep_rows_per_s"]) == {"1", "2"}
    assert result["failed"] is None and max(figures["max_abs_logit_diff"].values()) <= 1e-5
    assert set(figures["max_abs_logit_diff"]) == {"zhkd_plain", "pipeline", "pipeline_sorted"}
    assert [row["target"] for row in result["summary"]] == [1.3, None, None, None]
    # each profiled side's time is split into parts that add up to the whole
    assert set(figures["profile"]) == {"zhkd", "zhkd_plain", "pipeline"}
    for profiled in figures["profile"].values():
        assert sum(profiled["shares"].values()) == pytest.approx(1.0, abs=0.02)
        assert profiled["shares"]["matrix products"] > 0
    assert set(figures["zhkd_budget_sweep_rows_per_s"]) == {"64", "768"}
    ceiling = figures["ceiling"]
    assert ceiling["matmul_peak_gflops"] > 0 and ceiling["row_gflop"] > 0
    # the most possible is the machine's rate over the pipeline's: no labeller of the same work can beat it
    assert ceiling["most_possible_vs_pipeline"] == pytest.approx(
        ceiling["matmul_peak_gflops"] / ceiling["achieved_gflops"]["pipeline"])


def test_the_forward_bench_times_every_forward_on_the_same_batches(tmp_path):
    result = run_bench("forward_bench.py", tmp_path / "forward.json", "--rows", "6", "--shape", "mini", "--rounds", "2",
                       "--compile", "no")
    (forwards,) = result["by_threads"].values()
    assert {"plain", "packed", "packed, last layer for every token", "one row at a time"} <= set(forwards)
    assert result["rows"] == 6 and result["failed"] is None
    assert all(f["max_abs_logit_diff"] <= 1e-5 and f["cpu_seconds"] > 0 for f in forwards.values())
    assert forwards["plain"]["vs_plain"] == {"by": "cpu_seconds", "mean": pytest.approx(1.0), "interval": 0.0}
    assert len(result["summary"]) == len(forwards) - 1 and result["compile_seconds"] is None


def test_the_reader_bench_reads_the_same_rows_with_both_readers(tmp_path):
    result = run_bench("reader_bench.py", tmp_path / "reader.json", "--rows", "1500", "--shards", "2",
                       "--rounds", "1")
    sides = result["contenders"]
    assert sides["zhkd"]["rows"] == sides["datasets"]["rows"] == 1500
    assert sides["zhkd"]["rounds"][0]["tokens"] == sides["datasets"]["rounds"][0]["tokens"]
    assert result["failed"] is None and result["shuffle_rows"] == 8192


def test_the_build_bench_runs_both_worker_counts_on_one_source(tmp_path):
    result = run_bench("build_bench.py", tmp_path / "build.json", "--sizes", "12", "--num-aug", "1")
    runs = result["runs"]
    assert sorted(r["workers"] for r in runs) == [1, 2] and all("failed" not in r for r in runs)
    assert len({r["rows_in"] for r in runs}) == 1 and result["identical_shards_by_size"] == {"12": True}
    by_workers = {r["workers"]: r["cpu_s_by_role"] for r in runs}
    # in-process, the driver does the work (a library may start a short-lived helper process, so not
    # exactly none below it); with 2 local workers, processes below it do a share of the work
    assert by_workers[1]["driver"] > 0 and by_workers[2]["workers"] > max(by_workers[1]["workers"], 0.5)
    assert all(cpu["driver_peak_rss_mib"] > 0 for cpu in by_workers.values())
    assert result["failed"] is None


def test_the_row_loss_bench_counts_every_row_it_expected_in_each_run(tmp_path):
    result = run_bench("row_loss_bench.py", tmp_path / "row_loss.json", "--size", "20", "--runs", "2",
                       "--num-aug", "1")
    assert [r["published"] for r in result["runs"]] == [True, True]
    assert all(r["expected"] == r["written"] > 20 for r in result["runs"]) and result["rows_lost_total"] == 0
    (row,) = result["summary"]
    assert row["ratio"] == 1.0 and "2 of 2 builds" in row["comparison"]


def test_the_shuffle_bench_measures_every_grouping_of_the_build_and_compares_with_a_baseline(tmp_path):
    first = run_bench("shuffle_bytes.py", tmp_path / "first.json", "--size", "12", "--num-aug", "1")
    table = {row["grouping"]: row for row in first["table"]}
    assert {"GroupExamples", "GroupForTeacher", "GroupWrites", "GroupShards"} <= set(table)
    assert not table["SpreadUnits"]["on_dask"] and all(row["on_dask"] for name, row in table.items()
                                                      if name != "SpreadUnits")
    for name in ("GroupExamples", "GroupForTeacher", "GroupWrites"):  # rows cross these
        assert table[name]["elements"] > 0 and table[name]["pickled_bytes"] > table[name]["elements"] * 20
    assert first["written"] > 12 and first["totals"]["elements"] == sum(
        row["elements"] for row in first["table"] if row["on_dask"])
    again = run_bench("shuffle_bytes.py", tmp_path / "again.json", "--size", "12", "--num-aug", "1",
                      "--baseline", str(tmp_path / "first.json"))
    assert again["written"] == first["written"] and again["baseline"]["table"] == first["table"]
    ratios = {row["comparison"].split(": ")[1].split(",")[0]: row["ratio"] for row in again["summary"]}
    assert ratios["elements"] == ratios["pickled one by one"] == 1.0  # the same graph on the same rows


def test_the_dask_profile_names_zhkd_functions_and_ranks_their_growth():
    import dask_profile

    name = dask_profile.function_name
    assert name((str(ROOT / "pipelines" / "teacher.py"), 203, "_load")) == "pipelines/teacher.py:203:_load"
    assert name(("/v/lib/python3.11/site-packages/zhkd/pipelines/wire.py", 9, "f")) == "pipelines/wire.py:9:f"
    assert name(("<frozen importlib._bootstrap>", 1165, "_find_and_load")) == "imports"
    assert name(("/v/lib/python3.11/site-packages/augment/x.py", 1, "f")) is None  # another package's
    runs = [{"workers": 1, "functions": {"a": {"cpu_s": 5.0, "calls": 1}, "b": {"cpu_s": 9.0, "calls": 4}}},
            {"workers": 2, "functions": {"a": {"cpu_s": 10.5, "calls": 2}, "b": {"cpu_s": 9.5, "calls": 4},
                                         "c": {"cpu_s": 1.0, "calls": 2}}}]
    ranked = dask_profile.growth(runs, top=2)
    assert [r["function"] for r in ranked] == ["a", "c"] and ranked[0]["cpu_s_growth"] == 5.5
    assert ranked[0]["calls_per_worker_1"] == 1 and ranked[0]["calls_per_worker_2"] == 1


def test_the_dask_task_bench_names_task_kinds_and_finds_each_workers_idle_time():
    import dask_tasks

    assert dask_tasks.kind_of("('shuffle-split-0123456789abcdef0123456789abcdef', 1, 3, (2,))") == "shuffle-split"
    assert dask_tasks.kind_of("('apply_dofn_to_bundle-concat-0123456789abcdef0123456789abcdef', 0)") == (
        "apply_dofn_to_bundle-concat")
    tasks = [{"kind": "label", "worker": "tcp://b", "start": 0.0, "stop": 10.0},
             {"kind": "label", "worker": "tcp://a", "start": 0.0, "stop": 5.0},
             {"kind": "shuffle-split", "worker": "tcp://a", "start": 9.5, "stop": 9.51}]
    transfers = [{"kind": "label", "worker": "tcp://a", "start": 5.0, "stop": 7.5},
                 {"kind": "label", "worker": "tcp://b", "start": 1.0, "stop": 1.25}]
    found = dask_tasks.summarise(10.0, tasks, transfers)
    assert found["tasks"] == 3 and found["kinds"]["label"] == {"tasks": 2, "busy_s": 15.0}
    assert list(found["kinds"]) == ["label", "shuffle-split"]  # the busiest kind first
    assert found["busy_per_twentieth"]["worker 1"] == [1.0] * 20  # tcp://b: busy throughout
    first = found["busy_per_twentieth"]["worker 0"]  # tcp://a: idle from 5 s but for a tiny task
    assert first[:10] == [1.0] * 10 and first[12] == 0
    assert [t["worker"] for t in found["long_tasks"]] == ["worker 1", "worker 0"]
    assert found["last_tenth"] == {"tasks": 1, "tiny_tasks": 1, "tiny_busy_s": 0.01}
    assert found["transfers"] == {"waits": 2, "wait_s": 2.8, "long": [
        {"worker": "worker 0", "start_s": 5.0, "stop_s": 7.5, "for": "label"}]}  # only the wait of 1 s or more


def test_the_worker_memory_bench_writes_every_row_of_both_shard_sizes(tmp_path):
    result = run_bench("worker_memory_bench.py", tmp_path / "memory.json", "--sizes", "2000,6000",
                       "--rows-per-run", "1000")
    small, large = result["results"]
    assert (small["rows"], small["runs"]) == (2000, 2) and (large["rows"], large["runs"]) == (6000, 6)
    assert large["shard_bytes"] > 2 * small["shard_bytes"] and small["peak_rss_mib"] > small["baseline_rss_mib"]
    (row,) = result["summary"]
    assert row["ratio"] == pytest.approx(small["peak_rss_mib"] / large["peak_rss_mib"]) and row["target"] == 0.8


def test_a_failed_build_is_never_called_identical():
    import build_bench

    runs = [{"size": 10, "shards_sha256": "aa"}, {"size": 10, "workers": 2, "failed": "boom"},
            {"size": 20, "shards_sha256": "bb"}, {"size": 20, "shards_sha256": "bb"},
            {"size": 30, "shards_sha256": "cc"}, {"size": 30, "shards_sha256": "dd"}]
    assert build_bench.identical_shards(runs, [10, 20, 30]) == {"10": None, "20": True, "30": False}


def test_the_pretrain_bench_steps_both_losses_alike(tmp_path):
    result = run_bench("pretrain_bench.py", tmp_path / "pretrain.json", "--shapes", "mini", "--steps", "2",
                       "--max-length", "32", "--batch-size", "4", "--texts", "200", "--threads", "1")
    (row,) = result["shapes"]
    assert row["timed_steps"] == 2 and row["speedup_vs_stock"] > 0


def test_the_length_bench_runs_both_orders_per_seed(tmp_path):
    result = run_bench("length_bench.py", tmp_path / "length.json", "--tasks", "classification", "--rows", "24",
                       "--dev-rows", "8", "--epochs", "1", "--shape", "mini", "--seeds", "0")
    runs = result["tasks"]["classification"]["runs"]
    assert [r["seed"] for r in runs["plain"]] == [r["seed"] for r in runs["grouped"]] == [0]


def test_the_logit_bits_bench_counts_rows_on_both_settings(tmp_path):
    result = run_bench("logit_bits_bench.py", tmp_path / "bits.json", "--rows", "4", "--long-rows", "2",
                       "--long-length", "64", "--shape", "tiny")
    assert all(r["rows"] == 4 for k, r in result["results"].items() if k != "threads_1_vs_2")
    assert result["results"]["threads_1_vs_2"]["rows"] == 2


def test_the_ddp_bench_times_every_mode_on_two_ranks(tmp_path):
    out = tmp_path / "ddp.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(BENCH / "ddp_bench.py"), "--shape", "mini", "--batch-size", "4", "--seq-len", "16",
                           "--steps", "2", "--rounds", "2", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text("utf-8"))
    assert result["meta"]["bench"] == "ddp_bench" and result["world_size"] == 2
    assert result["meta"]["command"].startswith("python -m torch.distributed.run --standalone --nproc_per_node 2 "
                                                "bench/ddp_bench.py")
    assert all(len(m["runs"]) == 2 and m["steps_per_s"] > 0 for m in result["modes"].values())
    assert [row["ratio"] > 0 for row in result["summary"]] == [True, True]


def fake_result(bench: str, ratio: float | None, target: float | None, interval: float = 0.25) -> dict:
    return {"meta": {"bench": bench, "command": f"python bench/{bench}.py --rows 5", "commit": "abc1234",
                     "date": "2026-11-30 12:00 UTC", "seconds": 12.0,
                     "machine": {"cpu": "Test CPU", "cpus": 2, "python": "3.11.7", "platform": "Linux"},
                     "load_average_before": [1.5, 1.0, 1.0], "load_average_after": [2.0, 1.0, 1.0]},
            "summary": [{"comparison": f"{bench} thing", "ours": "10 rows/s", "peer": "5 rows/s", "unit": "rows/s",
                         "ratio": ratio, "interval": interval, "target": target,
                         "met": None if target is None or ratio is None else ratio >= target, "note": "a note"}]}


def test_the_report_renders_every_ratio_between_the_markers(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "label_bench.json").write_text(json.dumps(fake_result("label_bench", 2.0, 1.3)), "utf-8")
    (results / "augment_bench.json").write_text(json.dumps(fake_result("augment_bench", 0.5, 1.0)), "utf-8")
    (results / "logit_bits_bench.json").write_text(json.dumps(fake_result("logit_bits_bench", None, None)), "utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{report.BEGIN}\nold table\n{report.END}\n\nafter\n", "utf-8")
    assert report.main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text("utf-8")
    assert text.startswith("intro\n") and text.endswith("after\n") and "old table" not in text
    assert text.index("### augment_bench") < text.index("### label_bench") < text.index("### logit_bits_bench")
    assert "| 2.00x ± 0.25 | ≥ 1.3x: met |" in text and "| 0.50x ± 0.25 | ≥ 1x: **missed** |" in text
    assert "`python bench/label_bench.py --rows 5` — 2026-11-30 12:00 UTC, commit abc1234, Test CPU (2 CPUs)" in text
    assert "| — | — |" in text   # a measurement that is not a ratio
    assert report.main(["--results", str(results), "--readme", str(readme)]) == 0
    assert readme.read_text("utf-8") == text   # rendering twice changes nothing


def test_a_target_is_met_only_when_the_whole_interval_clears_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    # The stored "met" says True for all three (ratio >= target); the report judges by the interval.
    (results / "a.json").write_text(json.dumps(fake_result("a", 1.19, 1.0, interval=0.34)), "utf-8")
    (results / "b.json").write_text(json.dumps(fake_result("b", 1.40, 1.0, interval=0.35)), "utf-8")
    (results / "c.json").write_text(json.dumps(fake_result("c", 0.84, 1.0, interval=0.11)), "utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.BEGIN}\n{report.END}\n", "utf-8")
    assert report.main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text("utf-8")
    assert "| 1.19x ± 0.34 | ≥ 1x: no measurable difference |" in text
    assert "| 1.40x ± 0.35 | ≥ 1x: met |" in text and "| 0.84x ± 0.11 | ≥ 1x: **missed** |" in text


def test_summary_rows_record_the_interval_verdict():
    import benchlib

    straddling = benchlib.summary_row("x", "1", "1", "rows/s", 1.19, interval=0.34, target=1.0)
    assert straddling["verdict"] == "no measurable difference" and straddling["met"] is False
    assert benchlib.summary_row("x", "1", "1", "rows/s", 1.2, interval=0.1, target=1.0)["met"] is True
    assert benchlib.summary_row("x", "1", "1", "rows/s", 0.8, interval=0.1, target=1.0)["verdict"] == "missed"
    assert benchlib.summary_row("x", "1", "1", "rows/s", 1.2, target=1.0)["verdict"] == "met"   # no interval
    assert benchlib.summary_row("x", "1", "1", "rows/s", 1.2)["met"] is None


def test_report_errors_are_one_line_and_exit_2(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n", "utf-8")
    assert report.main(["--results", str(results), "--readme", str(readme)]) == 2
    (results / "bad.json").write_text("{not json", "utf-8")
    assert report.main(["--results", str(results), "--readme", str(readme)]) == 2
    (results / "bad.json").write_text(json.dumps(fake_result("label_bench", 1.0, None)), "utf-8")
    assert report.main(["--results", str(results), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("bench report: error:") for line in err)
    assert "no bench results" in err[0] and "bad.json" in err[1] and "markers" in err[2]
    assert readme.read_text("utf-8") == "no markers\n"


def test_the_committed_bench_readme_is_the_rendering_of_the_committed_results():
    text = (BENCH / "README.md").read_text("utf-8")
    body = report.render(report.load_results(BENCH / "results"))
    assert f"{report.BEGIN}\n{body}\n{report.END}" in text


def test_the_teacher_bench_scores_the_word_model_and_the_baseline_on_the_same_dev_rows(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    words = ["好", "不", "错", "差", "酒", "店", "不错", "酒店", "服务", "很"]
    vectors = tmp_path / "vectors.safetensors"
    save_file({"vectors": np.random.default_rng(0).standard_normal((len(words), 8)).astype(np.float32)},
              str(vectors), metadata={"words": json.dumps(words, ensure_ascii=False), "source": "test"})
    result = run_bench("teacher_bench.py", tmp_path / "teacher.json", "--vectors", str(vectors), "--train-limit", "40",
                       "--dev-limit", "30", "--epochs", "1", "--seeds", "0,1", "--threads", "1",
                       "--variants", "meanvec-logreg,word-bert-1x200")
    assert result["train_rows"] == 40 and result["dev_rows"] == 30
    runs = result["runs"]["word-bert-1x200"]
    assert [r["seed"] for r in runs] == [0, 1] and all(0 <= r["dev_accuracy"] <= 1 for r in runs)
    assert runs[0]["initialised_rows"] > 0  # the vectors' words and their ## pieces started from the vectors
    assert result["per_variant"]["word-bert-1x200"]["seeds"] == 2
    assert result["gate"]["threshold"] == pytest.approx(result["baseline"]["dev_accuracy"] + 0.02)


def test_teacher_bench_runs_of_one_seed_combine_and_a_repeated_seed_is_refused(tmp_path):
    import teacher_bench

    def part(seed, accuracy):
        return {"meta": {"bench": "teacher_bench", "command": "c", "date": f"2026-12-0{seed + 1} 00:00 UTC",
                         "load_average_before": [1, 1, 1], "load_average_after": [1, 1, 1],
                         "seconds": 2.0}, "summary": [], "corpus": "chnsenti", "train_rows": 9,
                "dev_rows": 5, "labels": ["negative", "positive"], "vectors": {}, "settings": {"lr": 1},
                "seeds": [seed], "baseline": {"dev_accuracy": 0.8},
                "runs": {"word-bert-1x200": [{"seed": seed, "dev_accuracy": accuracy}]}}

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(part(0, 0.80)), "utf-8")
    b.write_text(json.dumps(part(1, 0.83)), "utf-8")
    assert teacher_bench.combine([a, b], tmp_path / "c.json") == 0
    combined = json.loads((tmp_path / "c.json").read_text("utf-8"))
    assert combined["seeds"] == [0, 1]
    assert combined["per_variant"]["word-bert-1x200"]["mean"] == pytest.approx(0.815)
    assert combined["gate"]["met_by"] == [] and combined["summary"][0]["peer"] == "0.8000"
    with pytest.raises(SystemExit, match="a seed appears in two files"):
        teacher_bench.combine([a, a], tmp_path / "d.json")


def test_the_parallel_ceiling_splits_the_source_into_halves_that_together_are_its_rows(tmp_path):
    import parallel_ceiling

    source = tmp_path / "source.jsonl"
    source.write_text("".join(f'{{"text": "{i}"}}\n' for i in range(5)), encoding="utf-8")
    halves = (tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    parallel_ceiling.split_source(source, halves)
    first, second = (h.read_text("utf-8") for h in halves)
    assert first.count("\n") == 2 and first + second == source.read_text("utf-8")


def test_the_parallel_ceiling_sets_the_recorded_dask_ratios_beside_the_ceiling(tmp_path):
    import argparse

    import parallel_ceiling

    def side(wall, workers_cpu):
        return {"wall_s": wall, "cpu_s_by_role": {"driver": 1.0, "workers": workers_cpu}}

    rounds = [{"round": 0, "one": side(300.0, 290.0), "two": side(200.0, 348.0)},
              {"round": 1, "one": side(310.0, 300.0), "two": side(200.0, 330.0)},
              {"round": 2, "one": side(300.0, 290.0), "two": {"wall_s": 5.0, "failed": "boom"}}]
    record = tmp_path / "dask.json"
    runs = [{"size": 100, "workers": 1, "round": 0, "wall_s": 150.0},
            {"size": 100, "workers": 2, "round": 0, "wall_s": 100.0},
            {"size": 100, "workers": 1, "round": 1, "wall_s": 140.0},
            {"size": 10, "workers": 2, "round": 1, "wall_s": 1.0}]
    record.write_text(json.dumps({"sizes": [10, 100], "runs": runs}), encoding="utf-8")
    assert parallel_ceiling.dask_round_ratios(record) == [1.5]   # round 1 has no 100-example run with 2 workers
    found = parallel_ceiling.result_of(rounds, argparse.Namespace(size=100), 0.0, (0.0, 0.0, 0.0), record)
    ceiling, cpu, dask = found["summary"]
    # the round with a failed build is left out
    assert ceiling["ratio"] == pytest.approx((1.5 + 1.55) / 2) and ceiling["target"] == 1.6
    assert cpu["ratio"] == pytest.approx((348 / 290 + 330 / 300) / 2)
    assert dask["ratio"] == pytest.approx(1.5 / ceiling["ratio"])


def test_finetune_curves_compare_variants_epoch_by_epoch_and_refuse_mixed_schedules(tmp_path):
    import finetune_curves

    def run(name: str, seed: int, scores: list[float], epochs: int = 3, init: str = "enc") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        events = [{"event": "finetune", "init": init, "train_rows": 100, "dev_rows": 10},
                  {"event": "stage_start", "total_steps": 10 * epochs, "steps_per_epoch": 10,
                   "train": {"epochs": epochs, "lr": 5e-4, "seed": seed}}]
        events += [{"event": "dev", "step": 10 * (i + 1), "score": score, "metric": "accuracy"}
                   for i, score in enumerate(scores)]
        (folder / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
        return folder

    base = finetune_curves.variant_of([finetune_curves.read_run(run("a0", 0, [0.70, 0.80, 0.82])),
                                       finetune_curves.read_run(run("a1", 1, [0.72, 0.78]))])
    assert [e["epoch"] for e in base["epochs"]] == [1, 2]  # epoch 3: not every run reached it
    assert base["epochs"][1]["mean"] == pytest.approx(0.79) and base["seeds"] == [0, 1]
    other = finetune_curves.variant_of([finetune_curves.read_run(run("b1", 1, [0.75, 0.80], init="tapt")),
                                        finetune_curves.read_run(run("b0", 0, [0.71, 0.84], init="tapt"))])
    first, second = finetune_curves.paired(other, base)
    assert first["differences"] == pytest.approx([0.71 - 0.70, 0.75 - 0.72])  # paired by seed, not by order
    assert second["mean"] == pytest.approx(((0.84 - 0.80) + (0.80 - 0.78)) / 2)
    with pytest.raises(SystemExit, match="differ in more than the seed"):
        finetune_curves.variant_of([finetune_curves.read_run(run("c0", 0, [0.7], epochs=3)),
                                    finetune_curves.read_run(run("c1", 1, [0.7], epochs=5))])
