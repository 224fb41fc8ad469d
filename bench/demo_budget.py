"""How long each demo scale takes, projected from measured costs: a budget, not a guess.

On a machine shared by many, a demo's wall time says more about the neighbours than about the demo.
So this measures what each kind of work costs in **CPU seconds with one torch thread** (a core of its
own would take that long, whatever else runs), each as a straight line through two sizes so that fixed
costs (loading, start-up) and per-unit costs are separated:

- MLM pre-training steps (the scale's `mlm_shape`, packed blocks of 128);
- teacher fine-tuning steps and student steps (gold `pre` and distilling `kd`), per task, on the demo's
  own sampled rows (NER grouped by length, as the demo does), plus the fixed cost of one run; the steps
  of every other teacher candidate (`zhkd.demo.TEACHER_CANDIDATES`: `mini` from scratch) alike;
- the teacher's choice (`zhkd select-teacher` over the candidates, with the classical baseline fitted on
  the train rows), priced in proportion to the train and dev rows it reads;
- soft-label builds, per source row, with and without augmentation (num_aug 2, the mlm operator on);
- scoring per test row and timing per model in `zhkd evaluate`;
- the student selection.

The models are random-weight checkpoints of the scale's shapes (cost depends on shape, not weights).
Then every scale in `zhkd.demo.SCALES` is priced: counts (rows, epochs, steps, seeds, models) from the
scale and the corpora, times the measured unit costs. The sum is an upper bound for a quiet 2-core
machine (two threads are never slower than one there), and the bench says so. Results:
bench/measurements/demo_budget.json.

    python bench/demo_budget.py            # measure (a few CPU minutes) and project every scale
    python bench/demo_budget.py --project  # re-project from the recorded costs only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

RESULTS = Path(__file__).parent / "measurements" / "demo_budget.json"


def cpu_of(fn) -> float:
    """Process CPU seconds (every thread of this process) that `fn()` took."""
    started = time.process_time()
    fn()
    return time.process_time() - started


def line(small: tuple[int, float], large: tuple[int, float]) -> dict:
    """Fixed and per-unit cost through two measured points (units, CPU seconds)."""
    (a, ca), (b, cb) = small, large
    per_unit = max(0.0, (cb - ca) / (b - a))
    return {"fixed_s": max(0.0, ca - per_unit * a), "per_unit_s": per_unit, "points": [small, large]}


def zhkd_cpu(*argv) -> float:
    from zhkd.cli import main

    def call():
        if main([str(a) for a in argv]) != 0:
            raise SystemExit(f"zhkd {' '.join(map(str, argv))} failed")

    return cpu_of(call)


def random_checkpoint(out: Path, shape: str, kind: str, tokenizer_dir: Path, labels: list[str] | None) -> Path:
    from zhkd.distill.students import build_model
    from zhkd.models import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    model = build_model(shape, kind=kind, vocab_size=len(tokenizer), labels=labels,
                        pad_token_id=tokenizer.pad_token_id, seed=0)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def measure(tmp: Path, scale_name: str, sizes: dict) -> dict:
    from zhkd.demo import DEMO_TASKS, SCALES, TEACHER_CANDIDATES, choose_student, sample_rows, sample_texts, write_jsonl
    from zhkd.distill.predict import read_task_rows
    from zhkd.models import char_vocab, save_char_tokenizer
    from zhkd.tasks import get_task

    scale = SCALES[scale_name]
    costs: dict = {"shape": scale.mlm_shape, "tasks": {}}
    texts = sample_texts("train", 2000)
    vocab_dir = tmp / "vocab"
    save_char_tokenizer(char_vocab(texts), vocab_dir)
    mlm = random_checkpoint(tmp / "mlm", scale.mlm_shape, "mlm", vocab_dir, None)
    corpus_file = write_jsonl([{"text": t} for t in texts], tmp / "texts.jsonl")
    a, b = sizes["pretrain_steps"]
    costs["pretrain_step"] = line(
        *[(n, zhkd_cpu("pretrain", "--input", corpus_file, "--output", tmp / f"pre{n}", "--shape", scale.mlm_shape,
                       "--max-steps", n, "--max-length", 128, "--save-every", 0)) for n in (a, b)])

    for spec in DEMO_TASKS:
        task = spec.task
        grouped = "--group-by-length" if spec.group_by_length else "--no-group-by-length"
        train = write_jsonl(sample_rows(spec.corpus, "train", 2000), tmp / f"{task}.train.jsonl")
        test = write_jsonl(sample_rows(spec.corpus, "test", sizes["test_rows"][1]), tmp / f"{task}.test.jsonl")
        small_test = write_jsonl(sample_rows(spec.corpus, "test", sizes["test_rows"][0]),
                                 tmp / f"{task}.test-small.jsonl")
        labels = read_task_rows(train, task)[1]
        teacher = random_checkpoint(tmp / f"{task}-teacher", scale.mlm_shape, get_task(task).model_kind, vocab_dir,
                                    labels)
        common = ["--batch-size", scale.batch_size, "--max-length", scale.max_length, grouped, "--save-every", 100000]
        task_costs: dict = {}
        a, b = sizes["teacher_steps"]
        task_costs["teacher_step"] = line(*[(n, zhkd_cpu(
            "finetune", "--task", task, "--train", train, "--init", mlm, "--output", tmp / f"{task}-ft{n}",
            "--max-steps", n, *common)) for n in (a, b)])
        others = [c for c in TEACHER_CANDIDATES if None not in c.init]  # the one from the MLM is `teacher_step`
        task_costs["candidate_steps"] = {c.name: line(*[(n, zhkd_cpu(
            "finetune", "--task", task, "--train", train, *c.init, "--output", tmp / f"{task}-{c.name}{n}",
            "--max-steps", n, *common)) for n in (a, b)]) for c in others}
        dev = write_jsonl(sample_rows(spec.corpus, "dev", scale.dev), tmp / f"{task}.dev.jsonl")
        candidates = [f"{c.name}={tmp / (f'{task}-{c.name}{b}' if c in others else f'{task}-ft{b}')}"
                      for c in TEACHER_CANDIDATES]
        task_costs["teacher_choice"] = {
            "train_rows": 2000, "dev_rows": len(dev.read_text("utf-8").splitlines()),
            "cpu_s": zhkd_cpu("select-teacher", "--task", task, *(a for c in candidates for a in ("--candidate", c)),
                              "--dev", dev, "--baseline-train", train, "--margin", spec.teacher_margin,
                              "--batch-size", scale.batch_size, "--max-length", scale.max_length,
                              "--output", tmp / f"{task}-choice.json")}
        build = ["build", "--task", task, "--teacher", teacher, "--mlm-model", mlm, "--truncate", "--max-chars",
                 scale.max_length - 2, "--max-length", scale.max_length, "--num-shards", 4]
        for aug in (scale.num_aug, 0):
            points = []
            for n in sizes["build_rows"]:
                part = write_jsonl(sample_rows(spec.corpus, "train", n), tmp / f"{task}.build{n}.jsonl")
                points.append((n, zhkd_cpu(*build, "--input", part, "--num-aug", aug, "--output",
                                           tmp / f"{task}-soft{aug}-{n}")))
            task_costs[f"build_row_aug{aug}"] = line(*points)
        data = tmp / f"{task}-soft{scale.num_aug}-{sizes['build_rows'][1]}"
        a, b = sizes["student_steps"]
        for stage in ("pre", "kd"):
            extra = ["--data", data] if stage == "kd" else []
            task_costs[f"student_{stage}_step"] = line(*[(n, zhkd_cpu(
                "distill", "--task", task, "--teacher", teacher, "--student", "mini", "--stages", stage,
                "--train", train, "--output", tmp / f"{task}-{stage}{n}", "--max-steps", n, *extra, *common))
                for n in (a, b)])
        student = tmp / f"{task}-pre{b}"
        rows_small, rows_large = sizes["test_rows"]
        evaluate = ["evaluate", "--task", task, "--teacher", f"teacher={teacher}", "--runs", scale.eval_runs,
                    "--throughput-batch", scale.throughput_batch, "--devices", "cpu"]
        one = zhkd_cpu(*evaluate, "--test", small_test, "--model", f"s={student}", "--output", tmp / f"{task}-e1")
        three = zhkd_cpu(*evaluate, "--test", small_test, "--model", f"s={student}", "--model", f"t={student}",
                         "--model", f"u={student}", "--output", tmp / f"{task}-e3")
        per_model = (three - one) / 2
        larger = zhkd_cpu(*evaluate, "--test", test, "--model", f"s={student}", "--output", tmp / f"{task}-e1l")
        score_row = max(0.0, (larger - one) / (rows_large - rows_small) / 2)  # two models score the rows
        task_costs["evaluate"] = {"per_student_s": per_model, "score_per_row_per_model_s": score_row,
                                  "fixed_s": max(0.0, one - 2 * per_model)}
        task_costs["selection_s"] = cpu_of(lambda t=teacher, k=task: choose_student(t, k, scale))
        costs["tasks"][task] = task_costs
    return costs


def corpus_rows(corpus: str, split: str) -> list[dict]:
    from zhkd.demo import sample_rows

    return sample_rows(corpus, split, 0)


def project(costs: dict) -> dict:
    """Every scale's CPU seconds, component by component, from the measured unit costs."""
    from zhkd.demo import DEMO_TASKS, SCALES
    from zhkd.demo_report import ABLATION
    from zhkd.tasks import get_task

    sizes = {spec.task: {split: len(corpus_rows(spec.corpus, split)) for split in ("train", "dev", "test")}
             for spec in DEMO_TASKS}
    projections = {}
    for name, scale in SCALES.items():
        if scale.mlm_shape != costs["shape"]:
            projections[name] = {"skipped": f"teacher shape {scale.mlm_shape}, costs measured for {costs['shape']}"}
            continue
        # A scale without MLM steps starts from the embedded encoder: nothing to pre-train.
        parts = {"pretrain": scale.mlm_steps and costs["pretrain_step"]["fixed_s"] + scale.mlm_steps * costs[
            "pretrain_step"]["per_unit_s"]}
        for spec in DEMO_TASKS:
            c, n = costs["tasks"][spec.task], sizes[spec.task]
            if "teacher_choice" not in c:
                raise SystemExit("the recorded costs predate the demo's teacher candidates: measure again")
            train = scale.train or n["train"]
            dev = scale.dev or n["dev"]
            test = scale.test or n["test"]
            epochs = scale.ner_teacher_epochs if get_task(spec.task).per_token else scale.teacher_epochs
            teacher_steps = epochs * math.ceil(train / scale.batch_size)
            parts[f"{spec.task}: teacher"] = c["teacher_step"]["fixed_s"] + teacher_steps * c["teacher_step"][
                "per_unit_s"]
            parts[f"{spec.task}: other teacher candidates"] = sum(
                step["fixed_s"] + teacher_steps * step["per_unit_s"] for step in c["candidate_steps"].values())
            choice = c["teacher_choice"]  # scoring dev rows, fitting the baseline on train rows: ~ rows read
            parts[f"{spec.task}: teacher choice"] = choice["cpu_s"] * (train + dev) / (choice["train_rows"]
                                                                                     + choice["dev_rows"])
            parts[f"{spec.task}: builds"] = sum(c[f"build_row_aug{aug}"]["fixed_s"] + train * c[
                f"build_row_aug{aug}"]["per_unit_s"] for aug in (scale.num_aug, 0))
            parts[f"{spec.task}: selection"] = c["selection_s"]
            students = 0.0
            for row in ABLATION:
                stages = row.stages.split(",")
                gold_share = sum(share for stage, share in scale.stage_shares if stage in stages and stage != "kd")
                kd_share = sum(share for stage, share in scale.stage_shares if stage in stages and stage == "kd")
                total_share = gold_share + kd_share
                gold_steps = scale.student_steps * gold_share / total_share
                kd_steps = scale.student_steps - gold_steps
                fixed = c["student_kd_step" if "kd" in stages else "student_pre_step"]["fixed_s"]
                students += scale.seeds * (fixed + gold_steps * c["student_pre_step"][
                    "per_unit_s"] + kd_steps * c["student_kd_step"]["per_unit_s"])
            parts[f"{spec.task}: students"] = students
            models = scale.seeds * len(ABLATION)
            e = c["evaluate"]
            parts[f"{spec.task}: evaluate"] = (e["fixed_s"] + models * e["per_student_s"]
                                               + (models + 1) * test * e["score_per_row_per_model_s"])
        total = sum(parts.values())
        projections[name] = {"cpu_seconds": {k: round(v, 1) for k, v in parts.items()},
                             "total_cpu_minutes": round(total / 60, 1)}
    return projections


# The `small` demo as the README recorded it before issue 11 (commit f17d329): one seed, 150 steps per
# stage (gold 150, KD 150, KD+aug 150, pre/KD/post 3 x 150), MLM 100 steps, teachers 3 (NER 4) epochs. That
# run took 16.0 minutes on 2 cores. Priced with today's costs, it says how far the one-thread CPU bound
# sits above a 2-core wall time.
PREVIOUS_SMALL = {"recorded_minutes": 16.0, "mlm_steps": 100, "teacher_epochs": {"classification": 3, "ner": 4},
                  "gold_steps": 150 + 150 + 150, "kd_steps": 150 + 150 + 150, "runs": 4, "models": 4}


def project_previous_small(costs: dict) -> dict:
    from zhkd.demo import DEMO_TASKS

    p = PREVIOUS_SMALL
    total = costs["pretrain_step"]["fixed_s"] + p["mlm_steps"] * costs["pretrain_step"]["per_unit_s"]
    for spec in DEMO_TASKS:
        c = costs["tasks"][spec.task]
        total += c["teacher_step"]["fixed_s"] + p["teacher_epochs"][spec.task] * math.ceil(2000 / 32) * c[
            "teacher_step"]["per_unit_s"]
        total += sum(c[f"build_row_aug{aug}"]["fixed_s"] + 2000 * c[f"build_row_aug{aug}"]["per_unit_s"]
                     for aug in (2, 0))
        total += c["selection_s"] + p["runs"] * c["student_pre_step"]["fixed_s"]
        total += p["gold_steps"] * c["student_pre_step"]["per_unit_s"] + p["kd_steps"] * c["student_kd_step"][
            "per_unit_s"]
        e = c["evaluate"]
        total += e["fixed_s"] + p["models"] * e["per_student_s"] + (p["models"] + 1) * 1000 * e[
            "score_per_row_per_model_s"]
    return {"projected_cpu_minutes": round(total / 60, 1), "recorded_wall_minutes": p["recorded_minutes"],
            "bound_over_wall": round(total / 60 / p["recorded_minutes"], 2)}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", action="store_true", help="only re-project from the recorded costs")
    parser.add_argument("--scale", default="small", help="whose shapes and settings to measure with")
    parser.add_argument("--quick", action="store_true", help="smaller measurement sizes (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = {"pretrain_steps": (2, 8), "teacher_steps": (4, 16), "student_steps": (10, 60),
             "build_rows": (40, 160), "test_rows": (100, 400)}
    if args.quick:
        sizes = {"pretrain_steps": (1, 2), "teacher_steps": (1, 3), "student_steps": (2, 6),
                 "build_rows": (10, 20), "test_rows": (20, 40)}
    results = json.loads(RESULTS.read_text("utf-8")) if RESULTS.exists() else {}
    if not args.project:
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            costs = measure(Path(tmp), args.scale, sizes)
            wall = time.perf_counter() - started
        results = {"costs": costs, "sizes": sizes, "measured_with_scale": args.scale, "wall_seconds": round(wall, 1),
                   "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
                               "load_average_before": load_before, "load_average_after": os.getloadavg()},
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    results["projections"] = project(results["costs"])
    results["calibration"] = project_previous_small(results["costs"])
    results["reading"] = ("CPU seconds with one torch thread; their sum bounds the wall time on a quiet 2-core "
                          "machine from above (plus the install)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    for name, projection in results["projections"].items():
        if "skipped" in projection:
            print(f"{name:7s} {projection['skipped']}")
            continue
        parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in projection["cpu_seconds"].items())
        print(f"{name:7s} {projection['total_cpu_minutes']:6.1f} CPU minutes ({parts})")
    c = results["calibration"]
    print(f"calibration: the previous small configuration projects to {c['projected_cpu_minutes']} CPU minutes; "
          f"its recorded run took {c['recorded_wall_minutes']} minutes on 2 cores ({c['bound_over_wall']}x)")
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
