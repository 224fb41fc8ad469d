"""Grouping by length: fine-tuning time and dev score of `zhkd finetune` with and without --group-by-length.

For each task and seed, the same `zhkd finetune` command runs twice on the same rows, plain and with
`--group-by-length` (the order alternating by seed), each a fresh process. Time is the training stage's
own (log.jsonl: stage start to stage end, dev scoring after each epoch included, start-up excluded);
the score is the dev headline metric after the last epoch. Reported per task: the plain time over the
grouped time, and the grouped score minus the plain score, each with its 95% interval over the seeds.
A claim that grouping helps or hurts the score holds only where that interval excludes 0.

Defaults follow docs/distill.md: 2,000 training rows, 400 dev rows, 3 epochs, the `small` shape, lr 5e-4,
from scratch. From scratch, small models stay near chance on these sizes (NER at F1 0), which says
nothing about the score: to judge it, pass --init a pre-trained MLM (the demo's `demo-out/mlm`, or one
from `zhkd pretrain`). Writes bench/results/length_bench.json.

    python bench/length_bench.py [--tasks classification,ner] [--rows 2000] [--seeds 0,1,2] [--init scratch]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchlib import RESULTS, interval, meta, summary_row, write_result  # noqa: E402

CORPUS = {"classification": "chnsenti", "ner": "pd98-ner"}


def write_rows(path: Path, corpus: str, split: str, n: int) -> None:
    from zhkd.pipelines.corpora import corpus_path

    with gzip.open(corpus_path(corpus, split), "rt", encoding="utf-8") as f, open(path, "w", encoding="utf-8") as out:
        for _, line in zip(range(n), f, strict=False):
            out.write(line)


def finetune(task: str, train: Path, dev: Path, out: Path, args, seed: int, grouped: bool) -> dict:
    zhkd = Path(sys.executable).with_name("zhkd")
    command = [str(zhkd), "finetune", "--task", task, "--train", str(train), "--dev", str(dev), "--init", args.init,
               "--output", str(out), "--epochs", str(args.epochs), "--lr", str(args.lr), "--seed", str(seed),
               "--batch-size", str(args.batch_size), "--group-by-length" if grouped else "--no-group-by-length"]
    if args.init == "scratch":
        command += ["--shape", args.shape]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"length_bench: {' '.join(command)} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    events = [json.loads(line) for line in (out / "log.jsonl").read_text("utf-8").splitlines()]
    start = next(e["time"] for e in events if e["event"] == "stage_start")
    end = next(e["time"] for e in events if e["event"] == "stage_end")
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    dev = next(iter(summary["stages"].values()))["dev"]
    return {"seconds": end - start, "dev": dev["scores"]}


def main() -> int:
    from zhkd.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="classification,ner")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--dev-rows", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--shape", default="small")
    parser.add_argument("--init", default="scratch")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=RESULTS / "length_bench.json")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()
    seeds = [int(s) for s in args.seeds.split(",")]

    result: dict = {"tasks": {}, "summary": []}
    with tempfile.TemporaryDirectory(prefix="zhkd-length-bench-") as tmp:
        for task in args.tasks.split(","):
            headline = get_task(task).headline
            train, dev = Path(tmp) / f"{task}.train.jsonl", Path(tmp) / f"{task}.dev.jsonl"
            write_rows(train, CORPUS[task], "train", args.rows)
            write_rows(dev, CORPUS[task], "dev", args.dev_rows)
            runs = {"plain": [], "grouped": []}
            for n, seed in enumerate(seeds):
                for grouped in ((False, True) if n % 2 == 0 else (True, False)):
                    name = "grouped" if grouped else "plain"
                    run = finetune(task, train, dev, Path(tmp) / f"{task}-{seed}-{name}", args, seed, grouped)
                    runs[name].append({"seed": seed, **run})
                    print(f"{task} seed {seed} {name:7s}: {run['seconds']:6.1f} s, dev {headline} "
                          f"{run['dev'][headline]:.4f}", file=sys.stderr, flush=True)
            pairs = list(zip(runs["plain"], runs["grouped"], strict=True))
            speed = [p["seconds"] / g["seconds"] for p, g in pairs]
            gain = [g["dev"][headline] - p["dev"][headline] for p, g in pairs]
            (speed_mean, speed_half), (gain_mean, gain_half) = interval(speed), interval(gain)
            result["tasks"][task] = {"runs": runs, "headline": headline}

            seconds = {name: sum(r["seconds"] for r in rs) / len(rs) for name, rs in runs.items()}
            scores = {name: sum(r["dev"][headline] for r in rs) / len(rs) for name, rs in runs.items()}
            model = args.shape if args.init == "scratch" else args.init
            setting = f"{args.rows:,} rows, {args.epochs} epochs, {model}, lr {args.lr:g}, seeds {args.seeds}"
            result["summary"] += [
                summary_row(f"fine-tune {task}: plain shuffling time / grouped by length time",
                            f"{seconds['grouped']:.0f} s grouped", f"{seconds['plain']:.0f} s plain",
                            "s", speed_mean, interval=speed_half, note=setting),
                summary_row(f"fine-tune {task}: dev {headline}, grouped by length vs plain shuffling",
                            f"{scores['grouped']:.4f} grouped", f"{scores['plain']:.4f} plain", headline, None,
                            note=(f"grouped minus plain {gain_mean:+.4f} ± {gain_half:.4f} over the seeds: a "
                                  "difference holds only where the interval excludes 0")),
            ]
    result["meta"] = meta("length_bench", started, load_before)
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
