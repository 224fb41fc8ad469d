"""The classical baselines on the bundled corpora: what a teacher must beat, on the rows it trains on.

For each task, the baseline `zhkd evaluate --baseline` trains (TF-IDF of character 1-3-grams + logistic
regression for sentiment, a linear-chain CRF on a ±2 character window for NER), at two sizes:

- `small`: the rows `zhkd demo --scale small` samples (2,000 train, 400 dev, 1,000 test), tuned on its dev;
- `whole`: the whole train split, tuned on the whole dev split, scored on the small scale's 1,000 test
  rows (the demo's) and on the whole test split.

Each run records its train time (featurisation, the dev grid and the fits), scores, latency at batch 1 on a
test row of median length (the harness of `zhkd evaluate`: `time_in_rounds`, p50 with p10-p90), size of
the saved files and non-zero weights. `--leakage` adds, for pd98-ner, the share of dev/test entity
mentions whose (type, surface) is also an entity in train. Writes bench/results/baseline.json.

    python bench/baseline_bench.py [--scales small,whole] [--tasks classification,ner] [--leakage] [--runs 30]

The CRF on the whole split takes several minutes per setting on a shared 2-core machine (two settings).
`--data-dir DIR` reads pd98-ner.{train,dev,test}.jsonl.gz from DIR instead of the bundled files (e.g. an
older release's, to measure its leakage).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results" / "baseline.json"
CORPORA = {"classification": "chnsenti", "ner": "pd98-ner"}


def demo_sample(corpus: str, split: str, limit: int, data_dir: Path | None) -> list[dict]:
    """The rows `zhkd demo` samples (its own function), as raw corpus rows."""
    from zhkd.demo import sample_rows

    if data_dir is None:
        return sample_rows(corpus, split, limit)
    import gzip
    import hashlib

    with gzip.open(data_dir / f"{corpus}.{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rows.sort(key=lambda r: hashlib.blake2b(r["id"].encode(), digest_size=8).digest())  # as sample_rows orders them
    return rows[:limit] if limit else rows


def task_rows(rows: list[dict], task: str, label_names: list[str] | None, folder: Path, name: str):
    """Rows as `read_task_rows` gives them to `zhkd evaluate` (label ids), through a JSONL file."""
    from zhkd.distill.predict import read_task_rows

    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return read_task_rows(path, task, label_names=label_names)


def time_batch_1(task: str, trained, rows: list[dict], runs: int) -> dict:
    from zhkd.distill.evaluate import median_row, row_length
    from zhkd.distill.latency import summarise, time_in_rounds

    row = median_row(task, rows)
    times = time_in_rounds({"baseline": lambda: trained.model.predict([row])}, runs=runs, warmup=3)["baseline"]
    return summarise(times, device="cpu", dtype=None, seq_len=row_length(task, row), batch_size=1).to_dict()


def run_one(task: str, scale: str, data_dir: Path | None, runs: int, folder: Path) -> dict:
    from zhkd.demo import SCALES
    from zhkd.distill.baseline import train_baseline
    from zhkd.distill.metrics import task_scores
    from zhkd.tasks import get_task

    corpus, small = CORPORA[task], SCALES["small"]
    limits = {"train": small.train, "dev": small.dev} if scale == "small" else {"train": 0, "dev": 0}
    train, labels = task_rows(demo_sample(corpus, "train", limits["train"], data_dir), task, None, folder, "train")
    dev, _ = task_rows(demo_sample(corpus, "dev", limits["dev"], data_dir), task, labels, folder, "dev")
    tests = {f"demo-{small.test}": task_rows(demo_sample(corpus, "test", small.test, data_dir), task, labels,
                                             folder, "test-small")[0]}
    if scale == "whole":
        tests["whole"] = task_rows(demo_sample(corpus, "test", 0, data_dir), task, labels, folder, "test-whole")[0]
    print(f"{task} {scale}: training on {len(train):,} rows, tuning on {len(dev):,}", file=sys.stderr, flush=True)
    trained = train_baseline(task, train, labels, folder / f"{task}-{scale}", dev_rows=dev)
    headline = get_task(task).headline
    scores = {}
    for name, rows in tests.items():
        started = time.perf_counter()
        scores[name] = {"rows": len(rows), **task_scores(task, rows, trained.model.predict(rows), labels),
                        "predict_seconds": round(time.perf_counter() - started, 2)}
    result = {"task": task, "corpus": corpus, "scale": scale, "train_rows": len(train), "dev_rows": len(dev),
              **trained.record(), "test": scores, "size_bytes": trained.size_bytes,
              "parameters": trained.model.parameters(),
              "latency_batch_1": time_batch_1(task, trained, next(iter(tests.values())), runs)}
    shown = ", ".join(f"{headline} {s[headline]:.4f} on {s['rows']:,} ({n})" for n, s in scores.items())
    print(f"{task} {scale}: {trained.model.kind} {trained.settings}, {trained.train_seconds:.1f} s to train; {shown}; "
          f"p50 {result['latency_batch_1']['p50_ms']:.2f} ms; {result['parameters']:,} weights, "
          f"{result['size_bytes'] / 1e6:.1f} MB", file=sys.stderr, flush=True)
    return result


def leakage(data_dir: Path | None) -> dict:
    """Share of dev and test entity mentions whose (type, surface) is also an entity mention in train."""
    from zhkd.distill.metrics import entity_spans

    def mentions(split: str) -> list[tuple[str, str]]:
        return [(etype, "".join(r["tokens"][a:b])) for r in demo_sample("pd98-ner", split, 0, data_dir)
                for a, b, etype in entity_spans(r["tags"])]

    train = set(mentions("train"))
    out = {}
    for split in ("dev", "test"):
        found = mentions(split)
        out[split] = {"mentions": len(found), "seen_in_train": sum(m in train for m in found) / len(found)}
        print(f"pd98-ner {split}: {out[split]['seen_in_train']:.1%} of {len(found):,} entity mentions are also "
              "entities in train", file=sys.stderr, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="small,whole", help="small, whole or both (default: both)")
    parser.add_argument("--tasks", default="classification,ner", help="classification, ner or both")
    parser.add_argument("--leakage", action="store_true", help="also measure pd98-ner's entity overlap")
    parser.add_argument("--runs", type=int, default=30, help="timed calls at batch 1 (default 30)")
    parser.add_argument("--data-dir", type=Path, help="read the pd98-ner files from here instead")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    scales = [s for s in args.scales.split(",") if s]
    tasks = [t for t in args.tasks.split(",") if t]
    if not set(scales) <= {"small", "whole"} or not set(tasks) <= set(CORPORA):
        parser.error("--scales takes small,whole and --tasks classification,ner")
    if args.data_dir and tasks != ["ner"]:
        parser.error("--data-dir holds pd98-ner files: use it with --tasks ner")
    results: dict = {"command": " ".join(["python", *sys.argv]), "machine": {
        "platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "runs": []}
    with tempfile.TemporaryDirectory(prefix="zhkd-baseline-bench-") as folder:
        for task in tasks:
            for scale in scales:
                results["runs"].append(run_one(task, scale, args.data_dir, args.runs, Path(folder)))
    if args.leakage:
        results["pd98_leakage"] = leakage(args.data_dir)
    results["machine"]["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
