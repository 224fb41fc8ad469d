"""bench/gpu_check.sh: it refuses a machine without CUDA at once, and its --dry-run measures every part on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"


def run_check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZHKD_PYTHON": sys.executable, "GPU_CHECK_RESULTS": str(tmp_path / "figures.jsonl"),
           "GPU_CHECK_WORK": str(tmp_path / "work"), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=900)


def test_without_cuda_the_gpu_check_stops_before_measuring_anything(tmp_path):
    result = run_check(tmp_path)
    assert result.returncode == 3
    assert "sees no CUDA device" in result.stderr and "--dry-run" in result.stderr
    assert not (tmp_path / "figures.jsonl").exists() and not (tmp_path / "work").exists()


def test_an_unknown_option_is_refused(tmp_path):
    result = run_check(tmp_path, "--fast")
    assert result.returncode == 2 and result.stderr.startswith("usage: bench/gpu_check.sh")


def test_the_dry_run_measures_every_part_on_the_cpu(tmp_path):
    result = run_check(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    written = [json.loads(line) for line in (tmp_path / "figures.jsonl").read_text("utf-8").splitlines()]
    assert printed == written
    assert written[0]["check"] == "environment" and written[0]["gpu"] is None and written[0]["mode"] == "dry-run"
    figures = {f["figure"]: f for f in written[1:]}
    assert set(figures) == {"zhkd_build_rows_per_s", "pipeline_sample_rows_per_s", "pipeline_rows_per_s",
                            "zhkd_build_vs_pipeline", "train_steps_per_s_run", "train_steps_per_s",
                            "train_bf16_vs_float32", "finetune_steps_per_s"}
    assert all(f["value"] > 0 and f["device"].startswith("CPU") and "failed" not in f for f in written[1:])
    # Both labelled the same rows; the pipeline's best batch size is the one it ran the whole set at.
    assert figures["zhkd_build_rows_per_s"]["rows"] == figures["pipeline_rows_per_s"]["rows"] == 200
    samples = [f for f in written if f.get("figure") == "pipeline_sample_rows_per_s"]
    assert figures["pipeline_rows_per_s"]["batch_size"] == max(samples, key=lambda f: f["value"])["batch_size"]
    assert {f["precision"] for f in written if f.get("figure") == "train_steps_per_s"} == {"float32", "bf16"}
    assert figures["finetune_steps_per_s"]["demo_scale"] == "tiny"
    assert (tmp_path / "work" / "soft" / "COMPLETED").exists()


def test_a_python_without_the_project_is_refused_in_one_line(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env_python = bare / "bin" / "python"
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ZHKD_PYTHON": str(env_python), "TMPDIR": str(tmp_path)})
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1].startswith("gpu_check: could not install zhkd from")
    assert "Traceback" not in result.stderr
