"""Peak memory of the build's shard writer at two shard sizes (default 100k and 1M rows a shard).

What grows with a shard is the sink: before, `WriteShard` held a whole shard as a list of row dicts,
a second list of stored rows, a sorted copy and an Arrow table. Now a shard's rows arrive in runs of
about (rows of the build / buckets), each sorted and written (`sink.write_run`), then streamed
through a k-way merge (`sink.merge_runs`). This bench runs exactly those two functions, each size
in a fresh process, on synthetic rows shaped like a classification shard (a 48-character text, 40
token ids, two logits), and reads the process's peak resident memory (ru_maxrss) and its memory
before the rows (the baseline: interpreter, pyarrow, zhkd). Two ways to size the runs:

- `--rows-per-run R` (default 3,125: 100k rows in 32 runs, the default bucket count for one shard):
  the bucket count grows with the data, as docs/build.md advises, so memory should stay flat;
- `--runs-per-shard K` instead: a fixed bucket count, so each run grows with the shard.

Results: bench/results/worker_memory_bench.json (target: the peak at the larger size at most FLAT = 1.25x
the smaller's).

    python bench/worker_memory_bench.py [--sizes 100000,1000000] [--rows-per-run 3125 | --runs-per-shard 32]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import RESULTS, meta, summary_row, write_result  # noqa: E402

RESULT_FILE = RESULTS / "worker_memory_bench.json"
FLAT = 1.25   # "flat": ten times the rows may raise the peak by at most a quarter
TEXT = "这家酒店的服务很好，房间也很干净，早餐种类丰富，下次出差还会选择这里入住。"[:48]


def rss_kib() -> int:
    """Current resident memory in KiB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def synthetic_row(i: int) -> dict:
    row_id = f"{(i * 2654435761) % (1 << 32):08x}-{i:08d}"  # ids arrive unsorted, as from a shuffle
    return {"id": row_id, "source_id": row_id, "text": TEXT, "text_pair": None, "label": i % 2, "is_original": True,
            "ops": [], "input_ids": [101 + (i + k) % 5000 for k in range(40)], "teacher_logits": [0.25, -0.5]}


def child(rows: int, runs: int, staging: str) -> dict:
    """Write one shard of `rows` rows as `runs` sorted runs plus the streaming merge; report memory."""
    from zhkd.pipelines import sink
    from zhkd.shards import schema_for

    schema = schema_for("classification", label_names=["negative", "positive"])
    baseline = rss_kib()
    start = time.perf_counter()
    names = []
    for run in range(runs):  # a run is one group a worker holds: the rows whose run slot is `run`
        group = [synthetic_row(i) for i in range(run, rows, runs)]
        names.append(sink.write_run(staging, 0, run, group, schema))
        del group
    info = sink.merge_runs(staging, 0, 1, names, schema)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"rows": info.rows, "runs": runs, "rows_per_run": math.ceil(rows / runs), "shard_bytes": info.bytes,
            "baseline_rss_mib": baseline / 1024, "peak_rss_mib": peak / 1024,
            "peak_above_baseline_mib": (peak - baseline) / 1024, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    sizing = parser.add_mutually_exclusive_group()
    sizing.add_argument("--rows-per-run", type=int, default=3125)
    sizing.add_argument("--runs-per-shard", type=int)
    parser.add_argument("--out", type=Path, default=RESULT_FILE)
    parser.add_argument("--child", nargs=3, metavar=("ROWS", "RUNS", "STAGING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), int(args.child[1]), args.child[2])))
        return
    started, load_before = time.time(), os.getloadavg()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        runs = args.runs_per_shard or max(1, math.ceil(size / args.rows_per_run))
        with tempfile.TemporaryDirectory(prefix="zhkd-memory-bench-") as staging:
            done = subprocess.run([sys.executable, __file__, "--child", str(size), str(runs), staging],
                                  capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"{size:>9,} rows a shard in {runs} runs of {result['rows_per_run']:,}: "
              f"peak {result['peak_rss_mib']:.0f} MiB ({result['peak_above_baseline_mib']:.0f} MiB above the "
              f"{result['baseline_rss_mib']:.0f} MiB baseline), {result['wall_s']:.1f} s, "
              f"shard {result['shard_bytes'] / 2**20:.0f} MiB", flush=True)
    result = {"sizing": f"runs per shard {args.runs_per_shard}" if args.runs_per_shard
              else f"rows per run {args.rows_per_run}", "results": results, "summary": []}
    if len(results) >= 2:
        small, large = results[0], results[-1]
        growth = large["peak_rss_mib"] / small["peak_rss_mib"]
        result["summary"].append(summary_row(
            f"shard writer peak memory, {large['rows']:,} vs {small['rows']:,} rows a shard",
            f"{large['peak_rss_mib']:.0f} MiB at {large['rows']:,}",
            f"{small['peak_rss_mib']:.0f} MiB at {small['rows']:,}",
            "peak RSS (smaller / larger)", small["peak_rss_mib"] / large["peak_rss_mib"], target=round(1 / FLAT, 3),
            note=(f"{result['sizing']}; peak x{growth:.2f} for x{large['rows'] / small['rows']:.0f} rows "
                  f"(flat: at most x{FLAT}); above the interpreter's baseline {small['peak_above_baseline_mib']:.0f} "
                  f"-> {large['peak_above_baseline_mib']:.0f} MiB; shard {small['shard_bytes'] / 2**20:.0f} -> "
                  f"{large['shard_bytes'] / 2**20:.0f} MiB; the sink as Dataflow feeds it (grouped values streamed)")))
        print(f"peak memory x{growth:.2f} for x{large['rows'] / small['rows']:.0f} rows")
    result["meta"] = meta("worker_memory_bench", started, load_before)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
