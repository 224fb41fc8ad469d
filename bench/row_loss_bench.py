"""Row loss: several `zhkd build` runs in a row with 2 local worker processes, rows expected vs written.

Issue 12 (item 8): two of three builds of 100k examples with Beam's local engine in multi_processing
mode (`--direct_num_workers 2 --direct_running_mode multi_processing`) lost rows between the teacher
stage and the shard grouping, and the count check refused to publish them. This bench repeats the
build (default five times, 100k sentiment reviews, N=4, a 2-layer random teacher, 8 shards) and
records per run: the rows the build's own counts expect (labelled - filtered), the rows the shards
hold, whether it published, the wall time, and how many times Beam's data plane logged "Discard
inputs for cleaned up instruction" (the suspected symptom; Beam logs it at INFO, so the builds run
with INFO logging). The counts come from staging's `results/` (`read_results`) when a build refused to publish.
Results: bench/results/row_loss_bench.json, rewritten after every run (a 100k build takes a quarter of
an hour or more on 2 cores, so a stopped series still leaves the runs it finished).

    python bench/row_loss_bench.py [--size 100000] [--runs 5] [--runner direct|dask] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import meta, summary_row, write_result  # bench/ is on the path when a bench script runs
from build_bench import tiny_teacher, write_source

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).parent / "results" / "row_loss_bench.json"
DISCARD = "Discard inputs for cleaned up instruction"
# The build as a user runs it, with Beam's INFO log (where the data plane reports discarded input).
RUN_WITH_INFO_LOG = ("import logging, sys; logging.basicConfig(level=logging.INFO); "
                     "from zhkd.cli import main; sys.exit(main(sys.argv[1:]))")
RUNNER_FLAGS = {"direct": ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
                "dask": ["--runner", "DaskRunner", "--dask-workers", "2"]}


def one_run(source: Path, teacher: Path, out: Path, runner: str, num_aug: int) -> dict:
    from zhkd.pipelines.build_pipeline import COUNTS_FILE, RESULTS, read_results
    from zhkd.pipelines.outputs import STAGING

    command = [sys.executable, "-c", RUN_WITH_INFO_LOG, "build", "--task", "classification", "--input", str(source),
               "--teacher", str(teacher), "--output", str(out), "--num-aug", str(num_aug), "--num-shards", "8",
               "--truncate", *RUNNER_FLAGS[runner]]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    run = {"runner": runner, "wall_s": wall, "published": done.returncode == 0,
           "discard_log_lines": done.stderr.count(DISCARD)}
    if done.returncode == 0:
        manifest = json.loads((out / "manifest.json").read_text("utf-8"))
        counts = manifest["counts"]
        run.update(expected=counts["labelled"] - counts["filtered_total"] - counts["id_collisions"],
                   written=manifest["total_rows"])
    elif (out / STAGING / RESULTS / COUNTS_FILE).exists():  # refused by the count check: counts in staging
        counts = read_results(str(out / STAGING))["counts"]
        filtered = sum(n for k, n in counts.items() if k.startswith("filtered/"))
        run.update(expected=counts.get("labelled", 0) - filtered - counts.get("id_collisions", 0),
                   written=counts.get("written", 0))
    if done.returncode != 0:
        run["error"] = (done.stderr.strip().splitlines() or ["?"])[-1]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="source examples (default 100,000)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--num-aug", type=int, default=4)
    parser.add_argument("--runner", choices=sorted(RUNNER_FLAGS), default="direct")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"result file (default {RESULTS})")
    args = parser.parse_args()
    if args.size != 100_000:
        print(f"NOTE: {args.size:,} source examples instead of the issue's 100,000", flush=True)
    started, load_before = time.time(), os.getloadavg()
    work = args.work or Path(tempfile.mkdtemp(prefix="zhkd-row-loss-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    try:
        teacher = tiny_teacher(work / "teacher")
        source = work / "source.jsonl"
        write_source(source, args.size)
        for i in range(args.runs):
            out = work / f"out-{i}"
            shutil.rmtree(out, ignore_errors=True)
            run = one_run(source, teacher, out, args.runner, args.num_aug)
            runs.append(run)
            shutil.rmtree(out, ignore_errors=True)
            lost = run.get("expected", 0) - run.get("written", 0)
            print(f"run {i + 1}: expected {run.get('expected', '?'):,} written {run.get('written', '?'):,} "
                  f"(lost {lost:,}), published {run['published']}, {run['wall_s']:.0f} s, "
                  f"'{DISCARD}' logged {run['discard_log_lines']}x" + (f"; {run['error']}" if "error" in run else ""),
                  flush=True)
            write_result(args.out, result_of(runs, args, started, load_before))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"rows lost in all runs: {sum(lost_rows(r) for r in runs):,}")


def lost_rows(run: dict) -> int:
    return run.get("expected", 0) - run.get("written", 0)


def result_of(runs: list[dict], args: argparse.Namespace, started: float, load_before: tuple) -> dict:
    """The runs so far as a bench result (one summary row: rows written against rows expected)."""
    expected, written = sum(r.get("expected", 0) for r in runs), sum(r.get("written", 0) for r in runs)
    unpublished = sum(not r["published"] for r in runs)
    row = summary_row(
        f"rows kept, {len(runs)} of {args.runs} builds of {args.size:,} examples (N={args.num_aug}), "
        f"2 local workers ({args.runner})", f"{written:,} written", f"{expected:,} expected", "rows",
        written / expected if expected else None, target=1.0,
        note=f"lost {expected - written:,}; {unpublished} not published; "
             f"'{DISCARD}' logged {sum(r['discard_log_lines'] for r in runs)}x")
    return {"size": args.size, "num_aug": args.num_aug, "runner": args.runner, "workers": 2, "runs": runs,
            "rows_lost_total": sum(lost_rows(r) for r in runs), "all_published": all(r["published"] for r in runs),
            "summary": [row], "meta": meta("row_loss_bench", started, load_before, device="cpu")}


if __name__ == "__main__":
    main()
