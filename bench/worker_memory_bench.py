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

Results: bench/results/worker_memory_bench.json.

    python bench/worker_memory_bench.py [--sizes 100000,1000000] [--rows-per-run 3125 | --runs-per-shard 32]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "worker_memory_bench.json"
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
    parser.add_argument("--child", nargs=3, metavar=("ROWS", "RUNS", "STAGING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), int(args.child[1]), args.child[2])))
        return
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
    summary = {"bench": "worker_memory_bench", "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
               "sizing": f"runs per shard {args.runs_per_shard}" if args.runs_per_shard
               else f"rows per run {args.rows_per_run}", "results": results}
    if len(results) >= 2:
        small, large = results[0], results[-1]
        summary["peak_ratio_largest_vs_smallest"] = large["peak_rss_mib"] / small["peak_rss_mib"]
        summary["rows_ratio"] = large["rows"] / small["rows"]
        print(f"peak memory x{summary['peak_ratio_largest_vs_smallest']:.2f} for x{summary['rows_ratio']:.0f} rows")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
