"""Where a Dask build's wall time goes: `zhkd build` on a local cluster, its task stream recorded.

The scaling bench (`bench/dask_bench.py`) says how long a build takes; this one says what the workers
did meanwhile. It starts the local cluster `zhkd build` would (`pipelines/dask_cluster.py`), with the
bucket and partition counts zhkd would choose for it (unless `--num-buckets` / `--partitions` are
given), runs the build's library call on it (the build bench's source and 2-layer random teacher,
classification, N=4, 8 shards) and records every task's compute interval (Dask's task stream).

Reported: wall time (cluster start-up excluded) and the task count; per kind of task (the name Dask
gives it, fused steps joined by "-", up to the first key token) the count and busy seconds; per worker
the fraction of each twentieth of the run it spent computing; the tasks of one second or more in the
order they ran; the tiny tasks (< 50 ms) and their busy seconds in the last tenth; and the workers'
waits for inputs held by another worker (count, seconds, the waits of a second or more). A grouping's
shuffle shows as many tiny "shuffle-split/-group/-join" tasks. Results: bench/measurements/dask_tasks.json.

    python bench/dask_tasks.py [--size 20000] [--workers 2] [--num-aug 4] [--num-buckets B] [--partitions P]
                               [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchlib import ROOT, meta, write_result  # noqa: E402
from build_bench import bench_inputs  # noqa: E402

OUT = ROOT / "bench" / "measurements" / "dask_tasks.json"
SLICES, LONG_S, TINY_S = 20, 1.0, 0.05


def kind_of(key: str) -> str:
    """A task's kind: its key's name up to the first token (fused steps stay joined by "-")."""
    return re.sub(r"-[0-9a-f]{32}.*", "", str(key).strip("('\""))


def stream_build(source: Path, teacher: Path, out: Path, workers: int, num_aug: int, buckets: int,
                 partitions: int) -> tuple[float, list[dict]]:
    from distributed import Client, get_task_stream

    from zhkd.pipelines import dask_cluster
    from zhkd.pipelines.build import build
    from zhkd.pipelines.build_config import BuildConfig

    config = BuildConfig(task="classification", inputs=(str(source),), output=str(out), teacher=str(teacher),
                         num_aug=num_aug, num_shards=8, truncate=True)
    with dask_cluster.local_cluster(workers) as address, Client(address) as client:
        started = time.time()
        with get_task_stream(client) as stream:
            build(config, {"runner": "DaskRunner", "dask_client_address": address, "dask_npartitions": partitions},
                  num_buckets=buckets, log=lambda line: None)
        wall = time.time() - started
    by_action: dict[str, list[dict]] = defaultdict(list)  # "compute" (tasks), "transfer" (waits for data), ...
    for record in stream.data:
        for part in record["startstops"]:
            by_action[part["action"]].append({"kind": kind_of(record["key"]), "worker": record["worker"],
                                              "start": part["start"] - started, "stop": part["stop"] - started})
    tasks, transfers = (sorted(by_action[action], key=lambda t: t["start"]) for action in ("compute", "transfer"))
    return wall, tasks, transfers


def summarise(wall: float, tasks: list[dict], transfers: list[dict]) -> dict:
    """`transfers`: each wait of a worker for a task's input held by another worker (Dask records it
    from the request to the data's arrival, so it covers the peer's delay in answering, not just bytes)."""
    kinds: dict[str, dict] = defaultdict(lambda: {"tasks": 0, "busy_s": 0.0})
    for t in tasks:
        kinds[t["kind"]]["tasks"] += 1
        kinds[t["kind"]]["busy_s"] += t["stop"] - t["start"]
    step = wall / SLICES
    busy: dict[str, list[float]] = defaultdict(lambda: [0.0] * SLICES)
    for t in tasks:
        for i in range(SLICES):
            busy[t["worker"]][i] += max(0.0, min((i + 1) * step, t["stop"]) - max(i * step, t["start"]))
    last_tenth = [t for t in tasks if t["start"] >= 0.9 * wall]
    tiny = [t for t in last_tenth if t["stop"] - t["start"] < TINY_S]
    names = {w: f"worker {i}" for i, w in enumerate(sorted(busy))}
    return {
        "wall_s": round(wall, 1), "tasks": len(tasks),
        "busy_s": round(sum(t["stop"] - t["start"] for t in tasks), 1),
        "kinds": {k: {"tasks": v["tasks"], "busy_s": round(v["busy_s"], 2)}
                  for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]["busy_s"])},
        "busy_per_twentieth": {names[w]: [round(b / step, 2) for b in row] for w, row in sorted(busy.items())},
        "long_tasks": [{"worker": names[t["worker"]], "start_s": round(t["start"], 1), "stop_s": round(t["stop"], 1),
                        "kind": t["kind"]} for t in tasks if t["stop"] - t["start"] >= LONG_S],
        "last_tenth": {"tasks": len(last_tenth), "tiny_tasks": len(tiny),
                       "tiny_busy_s": round(sum(t["stop"] - t["start"] for t in tiny), 2)},
        "transfers": {"waits": len(transfers),
                      "wait_s": round(sum(t["stop"] - t["start"] for t in transfers), 1),
                      "long": [{"worker": names.get(t["worker"], t["worker"]), "start_s": round(t["start"], 1),
                                "stop_s": round(t["stop"], 1), "for": t["kind"]}
                               for t in transfers if t["stop"] - t["start"] >= LONG_S]},
    }


def main() -> None:
    from zhkd.pipelines.build import dask_partitions, default_buckets

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=20000, help="source examples (default 20,000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--num-aug", type=int, default=4)
    parser.add_argument("--num-buckets", type=int, help="default: what zhkd chooses for the local cluster")
    parser.add_argument("--partitions", type=int, help="Dask partitions (default: what zhkd chooses)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    buckets = args.num_buckets or default_buckets({}, args.workers, on_dask=True)
    partitions = args.partitions or dask_partitions(buckets, args.workers)
    started, load_before = time.time(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="zhkd-dask-tasks-"))
    try:
        teacher, source = bench_inputs(work, args.size)
        wall, tasks, transfers = stream_build(source, teacher, work / "out", args.workers, args.num_aug, buckets,
                                              partitions)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"size": args.size, "workers": args.workers, "num_aug": args.num_aug, "buckets": buckets,
              "partitions": partitions, **summarise(wall, tasks, transfers),
              "meta": meta("dask_tasks", started, load_before, device="cpu")}
    write_result(args.out, result)
    print(f"{args.size:,} examples on {args.workers} worker(s), {buckets} buckets, {partitions} partitions: "
          f"{result['wall_s']} s, {result['tasks']:,} tasks, {result['busy_s']} busy s; last tenth: "
          f"{result['last_tenth']['tiny_tasks']:,} tiny tasks; waits for data from another worker: "
          f"{result['transfers']['wait_s']} s in {result['transfers']['waits']}")
    for worker, row in result["busy_per_twentieth"].items():
        print(f"  {worker}: {' '.join(f'{b:.2f}' for b in row)}")


if __name__ == "__main__":
    main()
