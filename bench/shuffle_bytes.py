"""What crosses each shuffle of `zhkd build`: elements and pickled bytes per GroupByKey (and Reshuffle).

Dask (and any engine whose workers are processes) pickles every element that crosses a grouping
between processes, so the bytes and the time to pickle them are a cost per row that grows with the
workers. This bench runs the real build (`zhkd.pipelines.build.build`, Beam's in-process engine, the
build bench's source and 2-layer random teacher, classification, N=4, 8 shards) with every grouping's
input also fed to a measuring branch: the graph is walked before it runs, and each primitive GroupByKey
(a Reshuffle holds one) gets a branch that counts, per grouping:

- `elements`: what crosses it (bucket markers included);
- `pickled_bytes`: the elements pickled one by one (protocol 5, what Dask's pickle uses) as Beam's
  DaskRunner hands them to its shuffle: `(key, WindowedValue(value))` (its GroupByKey reifies the
  window of every value first); the size with per-element overhead;
- `group_bytes`: each group's elements pickled as one list, as Dask's task shuffle ships its pieces
  (a piece is part of a group, so Dask's true bytes lie between the two figures);
- `pickle_s`: CPU seconds to pickle and unpickle those group lists once, this process (a lower
  bound for a shuffle between processes: a transfer pickles on one side and unpickles on the other).
  One timing, in a process that holds the whole build: a garbage collection can land in it, so it is
  indicative, and the comparison with a baseline is made on the bytes and elements only.

Groupings inside a `Create` are left out (the DaskRunner replaces Create with an in-memory bag); a
`Reshuffle` is listed but marked, since the DaskRunner replaces it with nothing (`on_dask: false`).

The measuring branches only read the elements (the build's own stages and counts are unchanged; the
rows written and the shards' digest are recorded). `--baseline FILE` embeds an earlier result (e.g.
the graph before a change) and compares the totals. Results: bench/results/shuffle_bytes.json.

    python bench/shuffle_bytes.py [--size 2000] [--num-aug 4] [--buckets 8] [--baseline FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import apache_beam as beam  # noqa: E402
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.metrics.metric import MetricsFilter  # noqa: E402
from apache_beam.transforms.window import GlobalWindow  # noqa: E402
from apache_beam.utils.windowed_value import WindowedValue  # noqa: E402
from benchlib import RESULTS, meta, summary_row, write_result  # noqa: E402
from build_bench import tiny_teacher, write_source  # noqa: E402

NAMESPACE = "zhkd_shuffle"
FIGURES = ("elements", "pickled_bytes", "group_bytes", "pickle_us")


def pickled(value) -> bytes:
    return pickle.dumps(value, protocol=5)


def as_shipped(key, value) -> tuple:
    """An element as Beam's DaskRunner shuffles it: its GroupByKey wraps each value in a WindowedValue."""
    return key, WindowedValue(value, 0, (GlobalWindow(),))


class CountElements(beam.DoFn):
    """Elements and their one-by-one pickled bytes on the way into one grouping."""

    def __init__(self, grouping: str) -> None:
        self.elements = Metrics.counter(NAMESPACE, f"{grouping}/elements")
        self.bytes = Metrics.counter(NAMESPACE, f"{grouping}/pickled_bytes")

    def process(self, element):
        self.elements.inc()
        self.bytes.inc(len(pickled(as_shipped(*element))))
        return ()


class CountGroups(beam.DoFn):
    """Each group's elements pickled as one list (and unpickled), as a shuffle piece is shipped."""

    def __init__(self, grouping: str) -> None:
        self.bytes = Metrics.counter(NAMESPACE, f"{grouping}/group_bytes")
        self.micros = Metrics.counter(NAMESPACE, f"{grouping}/pickle_us")

    def process(self, element):
        key, values = element
        piece = [as_shipped(key, value) for value in values]
        started = time.process_time()
        data = pickled(piece)
        pickle.loads(data)
        self.micros.inc(round((time.process_time() - started) * 1e6))
        self.bytes.inc(len(data))
        return ()


def groupings(pipeline: beam.Pipeline) -> list[tuple[str, beam.PCollection, bool]]:
    """Each primitive GroupByKey outside a Create: its top-level transform (the grouping's name in the
    build's graph), its input, and whether it shuffles on Dask (not inside a Reshuffle)."""
    from apache_beam.pipeline import PipelineVisitor

    found: list[tuple[str, beam.PCollection, bool]] = []

    def enclosing(node) -> list:
        parents = []
        while node.parent is not None:
            node = node.parent
            parents.append(node.transform)
        return parents

    class Visitor(PipelineVisitor):
        def visit_transform(self, node) -> None:
            if not isinstance(node.transform, beam.GroupByKey):
                return
            parents = enclosing(node)
            if not any(isinstance(p, beam.Create) for p in parents):
                on_dask = not any(isinstance(p, beam.Reshuffle) for p in parents)
                found.append((node.full_label.split("/")[0], node.inputs[0], on_dask))

    pipeline.visit(Visitor())
    return found


def instrument(pipeline: beam.Pipeline) -> dict[str, bool]:
    """A measuring branch on the input of every grouping; returns the groupings' names in graph order
    (and whether each shuffles on Dask)."""
    names = {}
    for name, pcoll, on_dask in groupings(pipeline):
        _ = pcoll | f"CountElements[{name}]" >> beam.ParDo(CountElements(name))
        _ = (pcoll | f"Regroup[{name}]" >> beam.GroupByKey()
             | f"CountGroups[{name}]" >> beam.ParDo(CountGroups(name)))
        names[name] = on_dask
    return names


@contextmanager
def measured_runs(record: dict):
    """Patch the build driver's run step: instrument the graph, run it, read the counters into `record`."""
    from zhkd.pipelines import build as driver

    original = driver._run

    def run(pipeline):
        names = instrument(pipeline)
        result = original(pipeline)
        counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
        found = {c.key.metric.name: c.committed for c in counters}
        record["groupings"] = [{"grouping": name, "on_dask": on_dask,
                                **{f: found.get(f"{name}/{f}", 0) for f in FIGURES}}
                               for name, on_dask in names.items()]
        return result

    driver._run = run
    try:
        yield
    finally:
        driver._run = original


def measure(size: int, num_aug: int, buckets: int, work: Path) -> dict:
    from zhkd.pipelines.build import build
    from zhkd.pipelines.build_config import BuildConfig

    teacher = tiny_teacher(work / "teacher")
    source = work / f"source-{size}.jsonl"
    write_source(source, size)
    out = work / "out"
    config = BuildConfig(task="classification", inputs=(str(source),), output=str(out), teacher=str(teacher),
                         num_aug=num_aug, num_shards=8, truncate=True)
    record: dict = {}
    with measured_runs(record):
        done = build(config, {}, num_buckets=buckets, log=lambda line: None)
    manifest = done.manifest
    digest = hashlib.sha256("".join(s["sha256"] for s in manifest["shards"]).encode()).hexdigest()
    shutil.rmtree(out, ignore_errors=True)
    rows = record["groupings"]
    for row in rows:
        row["pickle_s"] = row.pop("pickle_us") / 1e6
    # Totals over what Dask shuffles (a Reshuffle is no shuffle there).
    totals = {f: sum(r[f] for r in rows if r["on_dask"]) for f in ("elements", "pickled_bytes", "group_bytes",
                                                                    "pickle_s")}
    return {"size": size, "num_aug": num_aug, "buckets": buckets, "written": manifest["total_rows"],
            "shards_sha256": digest, "table": rows, "totals": totals}


def count(result: dict) -> int:
    return sum(r["on_dask"] for r in result["table"])


def summary(result: dict, baseline: dict | None) -> list[dict]:
    size, totals = result["size"], result["totals"]
    rows = []
    if baseline is None:
        rows.append(summary_row(
            f"bytes crossing the build's {count(result)} groupings, {size:,} examples (N={result['num_aug']})",
            f"{totals['group_bytes'] / size:,.0f} B per example as group lists",
            f"{totals['pickled_bytes'] / size:,.0f} B per example one by one", "bytes", None,
            note=f"{totals['elements']:,} elements; {totals['pickle_s']:.2f} CPU s to pickle and unpickle them"))
        return rows
    before = baseline["totals"]
    where = f"commit {baseline['meta']['commit']}"
    for figure, unit, text in (("group_bytes", "bytes", "pickled as group lists"),
                               ("pickled_bytes", "bytes", "pickled one by one"),
                               ("elements", "elements", "elements")):
        ours, theirs = totals[figure], before[figure]
        rows.append(summary_row(
            f"all groupings, {size:,} examples (N={result['num_aug']}): {text}, this graph vs {where}",
            f"{ours:,} ({count(result)} groupings)", f"{theirs:,} ({count(baseline)})", unit,
            theirs / ours if ours else None, note="ratio = before / now (higher: less crosses)"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2000, help="source examples (default 2,000)")
    parser.add_argument("--num-aug", type=int, default=4)
    parser.add_argument("--buckets", type=int, default=8, help="--num-buckets (default 8: what 1-2 workers get)")
    parser.add_argument("--baseline", type=Path, help="an earlier result of this bench to compare with")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=RESULTS / "shuffle_bytes.json")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()
    baseline = None
    if args.baseline is not None:
        baseline = json.loads(args.baseline.read_text("utf-8"))
        baseline = {k: baseline[k] for k in ("meta", "size", "num_aug", "buckets", "written", "table", "totals",
                                         "shards_sha256")}
    work = args.work or Path(tempfile.mkdtemp(prefix="zhkd-shuffle-bytes-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(args.size, args.num_aug, args.buckets, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["summary"] = summary(result, baseline)
    if baseline is not None:
        result["baseline"] = baseline
    result["meta"] = meta("shuffle_bytes", started, load_before, device="cpu")
    write_result(args.out, result)
    print(f"{'grouping':<18} {'elements':>9} {'one by one':>12} {'as groups':>12} {'pickle s':>9}")
    for row in result["table"] + [{"grouping": "total on Dask", "on_dask": True, **result["totals"]}]:
        print(f"{row['grouping'] + ('' if row['on_dask'] else ' (not on Dask)'):<18} {row['elements']:>9,} "
              f"{row['pickled_bytes']:>12,} {row['group_bytes']:>12,} {row['pickle_s']:>9.3f}")


if __name__ == "__main__":
    main()
