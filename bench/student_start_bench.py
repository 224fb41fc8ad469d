"""What a real start buys a student: dev score of the same student, same steps, from a random start and
from its teacher (layers copied, or sub-cloned when the student is narrower), over several seeds.

Each (start, seed) is one `zhkd distill` run of `--stages` (default `pre`: gold labels only, so no
soft-label dataset is needed; give `--data` for `kd`) with the same `--stage-steps`; `--layer-map none`
is the random start, `uniform` the teacher's. The dev score after the last stage is recorded per seed,
with each start's mean ± 95% t-interval and the paired difference (teacher start minus random), under
`--name` in bench/measurements/student_start.json. Also recorded: the student's and the teacher's
parameters and their latency at batch 1 (interleaved rounds, one thread: wall-clock p50 and CPU time per
forward, the steadier figure on a shared machine), so the speed-up the start comes with is stated beside it.

    python bench/student_start_bench.py --task classification --teacher TEACHER/ --student mini \\
        --steps 300 --seeds 3 --train-rows 2000 --name cls-mini-300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

RESULTS = Path(__file__).parent / "measurements" / "student_start.json"
CORPUS = {"classification": "chnsenti", "ner": "pd98-ner"}
STARTS = {"random": "none", "teacher": "uniform"}


def interleaved_latency(models: dict, seq_len: int, rounds: int = 7, runs: int = 20) -> dict[str, dict]:
    """Per model, at batch 1: the median over rounds of its wall-clock p50, and the median CPU time of one
    forward (one thread: what a core of its own would take, steady on a shared machine). The models are
    timed in turn within every round, so drift on the machine touches all of them alike."""
    import torch

    from zhkd.distill.latency import measure_latency

    ids = torch.randint(5, min(m.config.vocab_size for m in models.values()), (1, seq_len),
                        generator=torch.Generator().manual_seed(0))
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            wall[name].append(measure_latency(model, seq_len=seq_len, batch_size=1, runs=runs, device="cpu").p50_ms)
            with torch.inference_mode():
                for _ in range(runs):
                    started = time.process_time()
                    model(input_ids=ids, attention_mask=torch.ones_like(ids))
                    cpu[name].append((time.process_time() - started) * 1e3)
    return {name: {"wall_p50_ms": statistics.median(wall[name]), "cpu_ms": statistics.median(cpu[name])}
            for name in models}


def main() -> None:
    import torch

    from zhkd.cli import main as zhkd
    from zhkd.demo import sample_rows, write_jsonl
    from zhkd.demo_report import logged_steps, split_steps
    from zhkd.distill.stats import mean_interval, paired_difference, verdict
    from zhkd.distill.students import build_model, init_from_teacher, parameter_count
    from zhkd.models import load_model
    from zhkd.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(CORPUS), required=True)
    parser.add_argument("--teacher", required=True, type=Path, help="a fine-tuned teacher checkpoint")
    parser.add_argument("--student", default="mini", help="a catalogue shape (default: %(default)s)")
    parser.add_argument("--name", required=True, help="the record's key in the results file")
    parser.add_argument("--stages", default="pre")
    parser.add_argument("--data", type=Path, help="a soft-label dataset, for a kd stage")
    parser.add_argument("--steps", type=int, default=300, help="total optimiser steps, split over the stages")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--starts", default="random,teacher")
    parser.add_argument("--train-rows", type=int, default=2000, help="0: the whole train split")
    parser.add_argument("--dev-rows", type=int, default=1000, help="0: the whole dev split")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--latency-seq-len", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see encoder_bench.py)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stages = args.stages.split(",")
    starts = args.starts.split(",")
    if "kd" in stages and not args.data:
        parser.error("a kd stage needs --data")

    stage_steps = split_steps(args.steps, stages, {"pre": 0.25, "kd": 0.5, "post": 0.25})
    kind = get_task(args.task).model_kind
    teacher = load_model(kind, args.teacher)
    student = build_model(args.student, kind=kind, vocab_size=teacher.config.vocab_size,
                          num_labels=teacher.config.num_labels)
    init = init_from_teacher(student, teacher)
    latency = interleaved_latency({"teacher": teacher, "student": student}, args.latency_seq_len)

    load_before = os.getloadavg()
    scores: dict[str, list[float]] = {start: [] for start in starts}
    records: dict[str, list[dict]] = {start: [] for start in starts}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = write_jsonl(sample_rows(CORPUS[args.task], "train", args.train_rows), tmp / "train.jsonl")
        dev = write_jsonl(sample_rows(CORPUS[args.task], "dev", args.dev_rows), tmp / "dev.jsonl")
        for seed in range(args.seeds):  # seed by seed, starts in turn: drift on the machine hits both alike
            for start in starts:
                out = tmp / f"{start}-{seed}"
                argv = ["distill", "--task", args.task, "--teacher", args.teacher, "--student", args.student,
                        "--stages", args.stages, "--train", train, "--dev", dev, "--output", out,
                        "--stage-steps", ",".join(f"{k}={v}" for k, v in stage_steps.items()),
                        "--layer-map", STARTS[start], "--lr", args.lr, "--batch-size", args.batch_size,
                        "--max-length", args.max_length, "--seed", seed, "--save-every", 100000,
                        "--group-by-length" if args.task == "ner" else "--no-group-by-length"]
                if args.data:
                    argv += ["--data", args.data]
                if zhkd([str(a) for a in argv]) != 0:
                    raise SystemExit(f"distill failed: {start}, seed {seed}")
                summary = json.loads((out / "summary.json").read_text("utf-8"))
                last = summary["stages"][stages[-1]]["dev"]
                scores[start].append(last["score"])
                records[start].append({"seed": seed, "dev_score": last["score"], "steps": logged_steps(out),
                                       "stage_scores": {k: v["dev"]["score"] for k, v in summary["stages"].items()}})
                print(f"{start} seed {seed}: dev {last['metric']} {last['score']:.4f}", flush=True)
    seconds = time.perf_counter() - started

    record = {
        "task": args.task, "teacher": str(args.teacher), "student": args.student, "stages": args.stages,
        "stage_steps": stage_steps, "train_rows": args.train_rows, "dev_rows": args.dev_rows, "lr": args.lr,
        "teacher_parameters": parameter_count(teacher), "student_parameters": parameter_count(student),
        "compression": parameter_count(teacher) / parameter_count(student),
        "latency_p50_ms": latency, "latency_seq_len": args.latency_seq_len,
        "speedup_wall": latency["teacher"]["wall_p50_ms"] / latency["student"]["wall_p50_ms"],
        "speedup_cpu": latency["teacher"]["cpu_ms"] / latency["student"]["cpu_ms"],
        "init_from_teacher": {k: v for k, v in init.items() if k != "hidden_dims"},
        "runs": records,
        "dev_score": {start: mean_interval(values).to_dict() for start, values in scores.items()},
        "seconds": round(seconds, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if {"random", "teacher"} <= set(starts):
        difference = paired_difference(scores["teacher"], scores["random"])
        record["teacher_minus_random"] = {**difference.to_dict(), "verdict": verdict(difference)}
    results = json.loads(RESULTS.read_text("utf-8")) if RESULTS.exists() else {}
    results[args.name] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    for start, interval in record["dev_score"].items():
        print(f"{start:8s} dev {interval['mean']:.4f} ± {interval['half_width']:.4f} over {interval['n']} seeds")
    if "teacher_minus_random" in record:
        d = record["teacher_minus_random"]
        print(f"teacher start - random: {d['mean']:+.4f} (95% CI {d['low']:+.4f} to {d['high']:+.4f}): {d['verdict']}")
    print(f"student {record['speedup_cpu']:.1f}x faster than the teacher at batch 1 by CPU time "
          f"({record['speedup_wall']:.1f}x by wall-clock p50), {record['compression']:.1f}x smaller -> {RESULTS}")


if __name__ == "__main__":
    main()
