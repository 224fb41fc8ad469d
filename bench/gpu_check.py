"""The GPU check's three measurements; `bench/gpu_check.sh` sets the environment up and runs them.

Each part runs the real commands as a user would (`zhkd build`, `zhkd distill`, `zhkd pretrain` and
`zhkd finetune`, in subprocesses of this interpreter) and prints one JSON line per figure, also
appended to the `--results` file:

- `label`: `zhkd build` labels N reviews (the bundled sentiment corpus, repeated with a cycle mark so
  that no row is a duplicate) with a random BERT-base-shaped teacher, bf16 on CUDA; then
  `transformers.pipeline("text-classification")` labels the very texts the build stored (normalised
  and truncated as the build did), at the best of a few batch sizes tried on a sample. Wall time of
  the whole command for zhkd (start-up and writing included); the pipeline's loading is excluded.
- `train`: a student distilled on that dataset for a fixed number of steps in float32 and in bf16
  autocast, in interleaved rounds; steps/s from the trainer's own log (first interval excluded).
- `finetune`: the demo's teacher fine-tuning at its `full` scale (whole train split, its shape,
  length, batch and learning rate) for a few hundred steps, from a briefly pre-trained MLM; steps/s
  over the whole stage (first steps and any epoch-end dev scoring included), and the dev score.

With `--scale dry-run` everything is tiny and runs on a CPU in about a minute, so the test suite can
run the script (tests/test_gpu_check.py); its figures say nothing about any GPU.

    python bench/gpu_check.py label --work DIR --results FILE [--rows 100000] [--shape bert-base]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import interval  # noqa: E402
from build_bench import write_source  # noqa: E402
from label_bench import make_teacher  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Student and settings per scale. The GPU scale is what the check measures; dry-run only proves the path.
TEACHER_SHAPE = {"gpu": "bert-base", "dry-run": "mini"}
STUDENT_SHAPE = {"gpu": "rbt3", "dry-run": "mini"}


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


class Figures:
    """Prints each figure as one JSON line and appends it to the results file."""

    def __init__(self, path: Path, check: str, scale: str):
        self.path, self.check, self.scale, self.device = path, check, scale, device_name()
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, figure: str, value: float | None, unit: str, **details) -> None:
        line = json.dumps({"check": self.check, "figure": figure, "value": value, "unit": unit,
                           "device": self.device, "scale": self.scale, **details}, ensure_ascii=False)
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def zhkd(*args: object) -> float:
    """Run a zhkd command with this interpreter; its wall time in seconds. A failure stops the part."""
    command = [sys.executable, "-m", "zhkd.cli", *map(str, args)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"gpu_check: `zhkd {args[0]}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


# --- label ---------------------------------------------------------------------------------------------------

def stored_texts(dataset: Path) -> list[str]:
    import pyarrow as pa

    texts = []
    for shard in json.loads((dataset / "manifest.json").read_text("utf-8"))["shards"]:
        with pa.memory_map(str(dataset / shard["file"])) as source:
            texts += pa.ipc.open_stream(source).read_all().column("text").to_pylist()
    return texts


def time_pipeline(pipe, texts: list[str], batch_size: int, sync) -> float:
    kwargs = {"truncation": True, "max_length": 512, "function_to_apply": "none", "top_k": None,
              "batch_size": batch_size}
    pipe(texts[:batch_size], **kwargs)  # warm-up at this batch size
    sync()
    start = time.perf_counter()
    pipe(texts, **kwargs)
    sync()
    return time.perf_counter() - start


def label(args, figures: Figures) -> None:
    import torch
    from transformers import pipeline

    from zhkd.pipelines.corpora import load_corpus

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    source, dataset = work / "reviews.jsonl", work / "soft"
    write_source(source, args.rows)
    teacher = make_teacher(args.teacher_shape, work / "teacher", [r["text"] for r in load_corpus("chnsenti", "train")])
    cuda = args.device == "cuda"
    build_s = zhkd("build", "--task", "classification", "--input", source, "--output", dataset, "--teacher", teacher,
                   "--num-aug", 0, "--truncate", "--max-length", 512, "--num-shards", 8, "--device", args.device,
                   "--batch-tokens", args.batch_tokens, "--max-batch-rows", args.max_batch_rows, *args.build_flag)
    manifest = json.loads((dataset / "manifest.json").read_text("utf-8"))
    rows = manifest["total_rows"]
    if rows != args.rows:
        sys.exit(f"gpu_check: the build wrote {rows} rows of {args.rows}")
    figures("zhkd_build_rows_per_s", rows / build_s, "rows/s", rows=rows, seconds=round(build_s, 2),
            command="zhkd build --num-aug 0", teacher_shape=args.teacher_shape,
            batch_tokens=args.batch_tokens, build_flags=args.build_flag, teacher=manifest.get("teacher"))

    texts = stored_texts(dataset)
    dtype = torch.bfloat16 if cuda else torch.float32
    pipe = pipeline("text-classification", model=str(teacher), tokenizer=str(teacher), device=args.device,
                    dtype=dtype)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    sample = texts[: args.pipeline_sample]
    tried = {}
    for batch_size in args.pipeline_batches:
        tried[batch_size] = len(sample) / time_pipeline(pipe, sample, batch_size, sync)
        figures("pipeline_sample_rows_per_s", tried[batch_size], "rows/s", batch_size=batch_size, rows=len(sample))
    best = max(tried, key=tried.get)
    seconds = time_pipeline(pipe, texts, best, sync)
    figures("pipeline_rows_per_s", len(texts) / seconds, "rows/s", rows=len(texts), seconds=round(seconds, 2),
            batch_size=best, dtype=str(dtype).removeprefix("torch."))
    figures("zhkd_build_vs_pipeline", (rows / build_s) / (len(texts) / seconds), "x")


# --- train ---------------------------------------------------------------------------------------------------

def steps_per_second(log: Path, *, from_start: bool = False) -> float:
    """Steps/s between the first and the last step line of the trainer's log (the first `log_every` steps,
    warm-up, excluded), or from the stage's start (`from_start`: everything the stage did counts)."""
    events = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    if from_start:
        steps.insert(0, next(e for e in events if e["event"] == "stage_start"))
    if len(steps) < 2:
        sys.exit(f"gpu_check: {log} has {len(steps)} step lines; run more steps")
    return (steps[-1]["step"] - steps[0]["step"]) / (steps[-1]["time"] - steps[0]["time"])


def train(args, figures: Figures) -> None:
    dataset, teacher = args.work / "soft", args.work / "teacher"
    if not (dataset / "COMPLETED").exists():
        sys.exit(f"gpu_check: {dataset} is not a dataset; run the label part first")
    order = ["float32", "bf16"]
    rates: dict[str, list[float]] = {p: [] for p in order}
    for round_ in range(args.rounds):
        for precision in order if round_ % 2 == 0 else order[::-1]:  # interleaved: drift hits both alike
            out = args.work / f"student-{precision}-{round_}"
            zhkd("distill", "--data", dataset, "--teacher", teacher, "--student", args.student, "--output", out,
                 "--max-steps", args.steps, "--batch-size", args.batch_size, "--max-length", args.max_length,
                 "--num-workers", 2, "--precision", precision, "--save-every", 10 * args.steps)
            rates[precision].append(steps_per_second(out / "log.jsonl"))
            figures("train_steps_per_s_run", rates[precision][-1], "steps/s", precision=precision, round=round_,
                    student=args.student, batch_size=args.batch_size, max_length=args.max_length)
    for precision in order:
        mean, half = interval(rates[precision])
        figures("train_steps_per_s", mean, "steps/s", precision=precision, ci95=half, runs=rates[precision],
                student=args.student, batch_size=args.batch_size, steps=args.steps)
    figures("train_bf16_vs_float32", statistics.fmean(rates["bf16"]) / statistics.fmean(rates["float32"]), "x")


# --- finetune ------------------------------------------------------------------------------------------------

def finetune(args, figures: Figures) -> None:
    from zhkd.demo import DEMO_TASKS, SCALES, write_splits

    scale = SCALES[args.demo_scale]
    spec = next(t for t in DEMO_TASKS if t.task == "classification")
    data = write_splits(spec, scale, args.work / "demo")
    mlm, teacher = args.work / "demo" / "mlm", args.work / "demo" / "teacher"
    pretrain_s = zhkd("pretrain", "--input", data["train"], "--output", mlm, "--shape", scale.mlm_shape,
                      "--max-steps", args.mlm_steps, "--max-length", scale.max_length)
    # The demo's from-mlm teacher candidate (zhkd/demo.py choose_teacher), capped at --steps.
    seconds = zhkd("finetune", "--task", spec.task, "--train", data["train"], "--dev", data["dev"], "--init", mlm,
                   "--output", teacher, "--epochs", scale.teacher_epochs, "--lr", scale.teacher_lr,
                   "--batch-size", scale.batch_size, "--max-length", scale.max_length, "--seed", 0,
                   "--group-by-length" if spec.group_by_length else "--no-group-by-length",
                   "--max-steps", args.steps)
    events = [json.loads(line) for line in (teacher / "log.jsonl").read_text("utf-8").splitlines()]
    dev = [e for e in events if e["event"] == "dev"][-1]
    start = next(e for e in events if e["event"] == "stage_start")
    figures("finetune_steps_per_s", steps_per_second(teacher / "log.jsonl", from_start=True), "steps/s",
            demo_scale=scale.name,
            shape=scale.mlm_shape, steps=args.steps, batch_size=scale.batch_size, max_length=scale.max_length,
            precision=start["precision"], train_rows=start["rows"], seconds=round(seconds, 2),
            pretrain_seconds=round(pretrain_s, 2), dev_score=dev["score"], dev_metric=dev["metric"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("label", "train", "finetune"))
    parser.add_argument("--work", type=Path, required=True, help="scratch directory shared by the parts")
    parser.add_argument("--results", type=Path, required=True, help="JSON lines file the figures are appended to")
    parser.add_argument("--scale", choices=("gpu", "dry-run"), default="gpu")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-tokens", type=int, default=65_536)
    parser.add_argument("--max-batch-rows", type=int, default=1024)
    parser.add_argument("--build-flag", action="append", default=[],
                        help="an extra `zhkd build` argument (repeatable), e.g. a Beam runner option")
    parser.add_argument("--pipeline-batches", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256, 1024])
    parser.add_argument("--pipeline-sample", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=200, help="train: steps per run; finetune: steps")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--mlm-steps", type=int, default=50)
    args = parser.parse_args()
    args.teacher_shape, args.student = TEACHER_SHAPE[args.scale], STUDENT_SHAPE[args.scale]
    args.demo_scale = "full" if args.scale == "gpu" else "tiny"
    args.device = "cuda" if args.scale == "gpu" else "cpu"
    parts = {"label": label, "train": train, "finetune": finetune}
    parts[args.part](args, Figures(args.results, args.part, args.scale))


if __name__ == "__main__":
    main()
