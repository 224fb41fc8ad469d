"""Where a Dask worker's CPU goes: `zhkd build` on a local cluster of 1 and of 2 workers, profiled.

Each worker process runs its tasks in one thread (`threads_per_worker=1`); this bench starts a cProfile
in that thread before the build (a task pinned to each worker) and reads it after, timed by the thread's
own CPU clock (`time.thread_time`), so waiting on a loaded machine does not count. The build is the
library call `zhkd build` makes (the build bench's source and 2-layer random teacher, classification,
N=4, 8 shards, 8 buckets), on a cluster of each size in turn.

Reported per worker count: the task threads' CPU seconds in all, and for zhkd's own functions (and
Python's import machinery) the cumulative CPU seconds and calls summed over the workers; then the
functions whose CPU grows most from the fewest workers to the most, with their calls per worker
process. Profiling slows Python code (often by half again), so the seconds are the profile's, for
comparing the two worker counts, not timings of a build. Cumulative times nest (an import inside a
model load counts in both). Results: bench/measurements/dask_profile.json.

    python bench/dask_profile.py [--size 3000] [--workers 1,2] [--num-aug 4] [--top 15] [--out FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchlib import ROOT, meta, write_result  # noqa: E402
from build_bench import bench_inputs  # noqa: E402

OUT = ROOT / "bench" / "measurements" / "dask_profile.json"
IMPORTS = ("<frozen importlib._bootstrap>", "_find_and_load")


def start_profile() -> int:
    """Run as a task: profile the worker's task thread from now on (its CPU clock)."""
    import builtins
    import cProfile

    builtins._zhkd_bench_profile = cProfile.Profile(time.thread_time)
    builtins._zhkd_bench_profile.enable()
    return os.getpid()


def stop_profile(path: str) -> str:
    """Run as a task on the same worker: stop, and write the statistics to `path`."""
    import builtins

    builtins._zhkd_bench_profile.disable()
    builtins._zhkd_bench_profile.dump_stats(path)
    return path


def function_name(key: tuple) -> str | None:
    """`file:line:function` for zhkd's own functions (the repository's folders in an editable install,
    `site-packages/zhkd/` in a plain one), `imports` for Python's import machinery, else None."""
    filename, line, function = key
    if (filename, function) == IMPORTS:
        return "imports"
    path = Path(filename)
    parts = path.parts
    if path.is_relative_to(ROOT) and ".venv" not in parts:
        where = path.relative_to(ROOT).as_posix()
    elif "site-packages" in parts and parts[parts.index("site-packages") + 1:][:1] == ("zhkd",):
        where = "/".join(parts[parts.index("site-packages") + 2:])
    else:
        return None
    return f"{where}:{line}:{function}"


def summarise(files: list[Path]) -> dict:
    """Total task-thread CPU, and per named function: cumulative CPU and calls, summed over the workers."""
    total, functions = 0.0, {}
    for file in files:
        for key, (_, calls, own, cumulative, _) in pstats.Stats(str(file)).stats.items():
            total += own
            name = function_name(key)
            if name is not None:
                held = functions.setdefault(name, {"cpu_s": 0.0, "calls": 0})
                held["cpu_s"] += cumulative
                held["calls"] += calls
    return {"task_cpu_s": round(total, 2),
            "functions": {k: {"cpu_s": round(v["cpu_s"], 2), "calls": v["calls"]} for k, v in functions.items()}}


def profile_build(source: Path, teacher: Path, work: Path, workers: int, num_aug: int) -> dict:
    from distributed import Client, LocalCluster

    from zhkd.pipelines.build import build
    from zhkd.pipelines.build_config import BuildConfig

    out = work / f"out-{workers}"
    config = BuildConfig(task="classification", inputs=(str(source),), output=str(out), teacher=str(teacher),
                         num_aug=num_aug, num_shards=8, truncate=True)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        addresses = list(client.scheduler_info()["workers"])
        pids = [client.submit(start_profile, workers=[a], pure=False).result() for a in addresses]
        started = time.perf_counter()
        done = build(config, {"runner": "DaskRunner", "dask_client_address": cluster.scheduler_address},
                     num_buckets=8, log=lambda line: None)
        wall = time.perf_counter() - started
        files = [Path(client.submit(stop_profile, str(work / f"profile-{workers}-{pid}.pstats"), workers=[a],
                                    pure=False).result()) for a, pid in zip(addresses, pids, strict=True)]
    shutil.rmtree(out, ignore_errors=True)
    return {"workers": workers, "wall_s": round(wall, 1), "written": done.manifest["total_rows"], **summarise(files)}


def growth(runs: list[dict], top: int) -> list[dict]:
    """The named functions whose CPU grows most from the fewest workers to the most."""
    low, high = min(runs, key=lambda r: r["workers"]), max(runs, key=lambda r: r["workers"])
    rows = []
    for name in set(low["functions"]) | set(high["functions"]):
        a = low["functions"].get(name, {"cpu_s": 0.0, "calls": 0})
        b = high["functions"].get(name, {"cpu_s": 0.0, "calls": 0})
        rows.append({"function": name, "cpu_s_growth": round(b["cpu_s"] - a["cpu_s"], 2),
                     f"cpu_s_{low['workers']}": a["cpu_s"], f"cpu_s_{high['workers']}": b["cpu_s"],
                     f"calls_per_worker_{low['workers']}": a["calls"] / low["workers"],
                     f"calls_per_worker_{high['workers']}": b["calls"] / high["workers"]})
    return sorted(rows, key=lambda r: -r["cpu_s_growth"])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=3000, help="source examples (default 3,000)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--num-aug", type=int, default=4)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="zhkd-dask-profile-"))
    try:
        teacher, source = bench_inputs(work, args.size)
        runs = [profile_build(source, teacher, work, int(w), args.num_aug) for w in args.workers.split(",")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"size": args.size, "num_aug": args.num_aug, "runs": runs, "growth": growth(runs, args.top),
              "meta": meta("dask_profile", started, load_before, device="cpu")}
    write_result(args.out, result)
    for run in runs:
        print(f"{run['workers']} worker(s): task threads {run['task_cpu_s']:.1f} CPU s (profiled), wall "
              f"{run['wall_s']:.1f} s, {run['written']:,} rows")
    for row in result["growth"]:
        calls = [v for k, v in row.items() if k.startswith("calls_per_worker")]
        print(f"  +{row['cpu_s_growth']:6.2f} CPU s  {row['function']}  (calls per worker {calls[0]:g} -> "
              f"{calls[1]:g})")


if __name__ == "__main__":
    main()
