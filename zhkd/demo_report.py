"""The demo's report: the ablation over seeds, its paired comparisons, tables and the generated reading.

Every figure here is computed from what the run recorded (the evaluation's scores and latencies, each
student's training log), and every sentence that reads the table is generated from those figures: a
row is said to beat another only when the 95% t-interval of their paired difference over seeds
excludes zero, and "no measurable difference" is written otherwise. `make readme` copies this text,
never a typed reading, into the README.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from zhkd.distill.stats import mean_interval, paired_difference, verdict


@dataclass(frozen=True)
class AblationRow:
    name: str  # the student's name in the evaluation is f"{name}-s{seed}"
    title: str
    stages: str
    dataset: str | None  # soft-label dataset the kd stage reads


# The ablation, in the order of the report. Every student has the same shape, the same start and the
# same total number of optimiser steps; only what it learns from differs.
ABLATION = (
    AblationRow("gold", "student, gold labels only", "pre", None),
    AblationRow("kd-noaug", "KD without augmentation", "kd", "soft-noaug"),
    AblationRow("kd-aug", "KD with augmentation", "kd", "soft-aug"),
    AblationRow("kd-aug-prepost", "KD with augmentation + pre/post fine-tuning", "pre,kd,post", "soft-aug"),
)
FULL_RECIPE = ABLATION[-1].name
# What each step of the recipe adds (the row against the one before it), and the whole recipe against gold.
COMPARISONS = (("kd-noaug", "gold"), ("kd-aug", "kd-noaug"), ("kd-aug-prepost", "kd-aug"),
               ("kd-aug-prepost", "gold"))
PAPER = {"speedup": 6.7, "compression": 13.6, "pct_of_teacher": 95.0, "pct_with_strategies": 98.0}


def student_name(row: str, seed: int) -> str:
    return f"{row}-s{seed}"


def split_steps(total: int, stages: list[str], shares: dict[str, float]) -> dict[str, int]:
    """`total` optimiser steps split over `stages` in proportion to `shares`; the remainder goes to the
    largest share, so the parts always add up to `total`."""
    weights = {s: shares[s] for s in stages}
    parts = {s: int(total * w / sum(weights.values())) for s, w in weights.items()}
    parts[max(weights, key=lambda s: weights[s])] += total - sum(parts.values())
    if min(parts.values()) < 1:
        raise ValueError(f"{total} steps are too few to split over {', '.join(stages)}")
    return parts


def logged_steps(student_dir: str | Path) -> int:
    """Optimiser steps a student actually took: the sum of its stages' steps in its training log."""
    lines = (Path(student_dir) / "log.jsonl").read_text("utf-8").splitlines()
    return sum(e["steps"] for e in map(json.loads, lines) if e.get("event") == "stage_end")


def _entries(evaluation: dict) -> dict[str, dict]:
    return {e["name"]: e for e in evaluation["models"]}


def _p50(entry: dict) -> float:
    return entry["latency"]["cpu"]["batch_1"]["p50_ms"]


def baseline_entry(evaluation: dict) -> dict | None:
    """The classical baseline's entry (role "baseline"), when the evaluation has one."""
    return next((e for e in evaluation["models"] if e.get("role") == "baseline"), None)


def ablation(evaluation: dict, students: dict[str, dict[int, str]], stage_steps: dict[str, dict[str, int]],
             seeds: list[int]) -> dict:
    """Per row: scores over seeds with intervals, % of teacher, speed and size; then the comparisons.

    `students[row][seed]` is the student's directory (its log gives the steps it took).
    """
    entries = _entries(evaluation)
    teacher = entries["teacher"]
    reference = evaluation["reference"]
    rows = []
    for row in ABLATION:
        seeded = [entries[student_name(row.name, seed)] for seed in seeds]
        scores = [e["score"] for e in seeded]
        p50 = statistics.median(_p50(e) for e in seeded)
        pct = [100 * s / teacher["score"] for s in scores] if teacher["score"] else None
        rows.append({
            "name": row.name, "title": row.title, "stages": row.stages, "stage_steps": stage_steps[row.name],
            "total_steps": sum(stage_steps[row.name].values()),
            "logged_steps": [logged_steps(students[row.name][seed]) for seed in seeds],
            "scores": scores, "score": mean_interval(scores).to_dict(),
            "metrics": {m: mean_interval([e["scores"][m] for e in seeded]).to_dict() for m in evaluation["metrics"]},
            "pct_of_teacher_per_seed": pct, "pct_of_teacher": mean_interval(pct).to_dict() if pct else None,
            "parameters": seeded[0]["parameters"], "p50_ms": p50,
            "speedup_vs_teacher": _p50(teacher) / p50, "compression_vs_teacher":
                teacher["parameters"] / seeded[0]["parameters"],
            "speedup_vs_reference": _p50(reference) / p50 if reference else None,
            "compression_vs_reference": reference["parameters"] / seeded[0]["parameters"] if reference else None,
        })
    by_name = {r["name"]: r for r in rows}
    comparisons = []
    for a, b in COMPARISONS:
        difference = paired_difference(by_name[a]["scores"], by_name[b]["scores"])
        comparisons.append({"a": a, "b": b, "difference": difference.to_dict(), "verdict": verdict(difference)})
    baseline = baseline_entry(evaluation)
    return {
        "seeds": seeds, "seed_count": len(seeds), "metric": evaluation["primary_metric"],
        "teacher": {"score": teacher["score"], "scores": teacher["scores"], "parameters": teacher["parameters"],
                    "p50_ms": _p50(teacher), "shape": teacher["shape"],
                    "speedup_vs_reference": _p50(reference) / _p50(teacher) if reference else None,
                    "compression_vs_reference": reference["parameters"] / teacher["parameters"] if reference else None},
        "baseline": None if baseline is None else {
            "name": baseline["name"], "score": baseline["score"], "scores": baseline["scores"],
            "parameters": baseline.get("parameters"), "p50_ms": _p50(baseline) if baseline.get("latency") else None},
        "rows": rows, "comparisons": comparisons,
    }


def summary_row(result: dict) -> dict:
    """One task's line of the summary: the full recipe's student against its teacher and the paper."""
    table = result["ablation"]
    student = next(r for r in table["rows"] if r["name"] == FULL_RECIPE)
    pct = student["pct_of_teacher"]
    return {
        "task": result["title"], "metric": table["metric"], "seeds": table["seed_count"],
        "teacher_score": table["teacher"]["score"], "teacher_shape": table["teacher"]["shape"],
        "teacher_parameters": table["teacher"]["parameters"],
        "baseline_score": table["baseline"]["score"] if table["baseline"] else None,
        "student_shape": result["student_selection"]["chosen"], "student_scores": student["scores"],
        "student_score": student["score"]["mean"], "student_ci": student["score"]["half_width"],
        "pct_of_teacher": pct["mean"] if pct else None, "pct_ci": pct["half_width"] if pct else None,
        "speedup_vs_teacher": student["speedup_vs_teacher"],
        "compression_vs_teacher": student["compression_vs_teacher"],
        "speedup_vs_bert_base": student["speedup_vs_reference"],
        "compression_vs_bert_base": student["compression_vs_reference"],
    }


# --- text ---------------------------------------------------------------------------------------------


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}x"


def _pm(interval: dict | None, spec: str = ".4f", suffix: str = "") -> str:
    if interval is None:
        return "—"
    return f"{interval['mean']:{spec}}{suffix} ± {interval['half_width']:{spec}}"


def summary_table(rows: list[dict]) -> str:
    lines = ["| task | baseline | teacher | student (mean ± 95% CI) | % of teacher | speed-up vs teacher "
             "| compression vs teacher | speed-up vs BERT-base shape | compression vs BERT-base shape |",
             "|" + "---|" * 9]
    for r in rows:
        baseline = "—" if r["baseline_score"] is None else f"{r['baseline_score']:.4f}"
        pct = "—" if r["pct_of_teacher"] is None else f"{r['pct_of_teacher']:.1f}% ± {r['pct_ci']:.1f}"
        lines.append(
            f"| {r['task']} ({r['metric']}) | {baseline} | {r['teacher_score']:.4f} | {r['student_score']:.4f} ± "
            f"{r['student_ci']:.4f} ({r['student_shape']}, {r['seeds']} seeds) | {pct} "
            f"| {_x(r['speedup_vs_teacher'])} | {_x(r['compression_vs_teacher'])} "
            f"| {_x(r['speedup_vs_bert_base'])} | {_x(r['compression_vs_bert_base'])} |")
    lines.append(f"| paper (BERT-base teacher) | | | | {PAPER['pct_of_teacher']:.0f}% / "
                 f"{PAPER['pct_with_strategies']:.0f}% with both strategies | | | {PAPER['speedup']}x "
                 f"| {PAPER['compression']}x |")
    return "\n".join(lines)


def teacher_note(rows: list[dict]) -> str:
    """Says plainly that this teacher is not BERT-base, wherever the paper's ratios stand beside ours."""
    shapes = "; ".join(
        f"{r['task']}: {r['teacher_shape']['layers']} layers x {r['teacher_shape']['hidden']}, "
        f"{r['teacher_parameters'] / 1e6:.2f}M parameters" for r in rows)
    return (f"The teacher here is not BERT-base ({shapes}). The paper's {PAPER['speedup']}x / "
            f"{PAPER['compression']}x are its student against a pre-trained BERT-base teacher; the columns beside "
            "them are this student against a BERT-base *shape* timed with random weights, which say how small and "
            "fast the student is, not how much of a BERT-base teacher it would keep.")


def ablation_table(result: dict) -> str:
    table = result["ablation"]
    metrics = result["evaluation"]["metrics"]
    lines = ["| model | " + " | ".join(f"{m} (mean ± 95% CI)" for m in metrics) + " | % of teacher | parameters "
             "| CPU p50 ms | speed-up vs teacher | speed-up vs BERT-base shape | compression vs BERT-base shape |",
             "|" + "---|" * (len(metrics) + 7)]
    baseline = baseline_entry(result["evaluation"])
    if baseline is not None:  # filled when the evaluation holds a classical baseline (`zhkd evaluate --baseline`)
        lines.append(f"| classical baseline ({baseline['name']}) | "
                     + " | ".join(f"{baseline['scores'][m]:.4f}" for m in metrics) + " | "
                     + (f"{100 * baseline['score'] / table['teacher']['score']:.1f}%" if table["teacher"]["score"]
                        else "—")
                     + " | " + (f"{baseline['parameters'] / 1e6:.2f}M" if baseline.get("parameters") else "—")
                     + " | " + (f"{_p50(baseline):.2f}" if baseline.get("latency") else "—") + " | | | |")
    for row in table["rows"]:
        lines.append(
            f"| {row['title']} | " + " | ".join(_pm(row["metrics"][m]) for m in metrics)
            + f" | {_pm(row['pct_of_teacher'], '.1f', '%')} | {row['parameters'] / 1e6:.2f}M | {row['p50_ms']:.2f} "
            f"| {_x(row['speedup_vs_teacher'])} | {_x(row['speedup_vs_reference'])} "
            f"| {_x(row['compression_vs_reference'])} |")
    teacher = table["teacher"]
    lines.append("| teacher | " + " | ".join(f"{teacher['scores'][m]:.4f}" for m in metrics)
                 + f" | 100.0% | {teacher['parameters'] / 1e6:.2f}M | {teacher['p50_ms']:.2f} | 1.0x "
                 f"| {_x(teacher['speedup_vs_reference'])} | {_x(teacher['compression_vs_reference'])} |")
    return "\n".join(lines)


def _titles() -> dict[str, str]:
    return {row.name: row.title for row in ABLATION}


def comparison_sentence(comparison: dict, metric: str) -> str:
    """One generated sentence per comparison; the sign is claimed only when the interval excludes zero."""
    titles = _titles()
    d = comparison["difference"]
    a, b = titles[comparison["a"]], titles[comparison["b"]]
    points = (f"{100 * d['mean']:+.1f} points of {metric}, 95% CI {100 * d['low']:+.1f} to {100 * d['high']:+.1f} "
              f"over {d['n']} seeds")
    if comparison["verdict"] == "gain":
        return f"{a} beats {b} ({points})."
    if comparison["verdict"] == "loss":
        return f"{a} trails {b} ({points})."
    return f"{a} against {b}: no measurable difference ({points})."


def teacher_choice_sentence(choice: dict | None) -> str:
    """Which teacher `zhkd select-teacher` chose and whether it beats the classical baseline on dev, from its
    recorded choice; None: the user gave the teacher."""
    if choice is None:
        return "The teacher was given (`zhkd demo --teacher`), not chosen by `zhkd select-teacher`."
    pick = next(c for c in choice["candidates"] if c["name"] == choice["chosen"]["name"])
    text = (f"`zhkd select-teacher` chose the teacher {pick['name']} (dev {choice['metric']} {pick['score']:.4f}) "
            f"from {len(choice['candidates'])} candidates ({', '.join(c['name'] for c in choice['candidates'])})")
    baseline = choice["baseline"]
    if baseline is not None:
        asked = f", at least {baseline['margin']:+.4f} asked" if baseline["margin"] else ""
        text += (f"; on dev it {'beats' if baseline['beaten'] else 'does not beat'} the classical baseline "
                 f"({baseline['score']:.4f}, teacher minus baseline {baseline['gap']:+.4f}{asked})")
    return text + "."


def teacher_choice_section(choice: dict | None) -> str:
    """The report's account of the teacher's choice: strategy, candidates, baseline and reasons, all copied
    from `select-teacher --output`."""
    if choice is None:
        return "The teacher was given (`zhkd demo --teacher`): no candidates were trained or compared."
    metric = choice["metric"]
    lines = [f"`zhkd select-teacher` on {choice['dev']['rows']:,} dev rows; strategy: {choice['strategy']}.", "",
             f"| candidate | dev {metric} | ECE | chosen |", "|---|---|---|---|"]
    lines += [f"| {c['name']} | {c['score']:.4f} | {c['ece']:.4f} | "
              f"{'yes' if c['name'] == choice['chosen']['name'] else ''} |" for c in choice["candidates"]]
    baseline = choice["baseline"]
    if baseline is not None:
        gate = (f"beat it by at least {baseline['margin']:+.4f}" if baseline["margin"] else "at least equal it")
        lines += ["", f"Classical baseline: dev {metric} {baseline['score']:.4f} ({baseline['source']}); to beat it "
                      f"the teacher must {gate}."]
    lines += ["", "Reasons:", "", *(f"- {reason}" for reason in choice["reasons"])]
    return "\n".join(lines)


def reading(result: dict) -> str:
    """The generated reading of one task's table."""
    table = result["ablation"]
    metric = table["metric"]
    student = next(r for r in table["rows"] if r["name"] == FULL_RECIPE)
    teacher = table["teacher"]
    text = [f"**{result['title']}.** {teacher_choice_sentence(result['teacher_choice'])}",
            f"The teacher scores {teacher['score']:.4f} {metric} on the test rows"]
    if table["baseline"] is not None:
        gap = 100 * (teacher["score"] - table["baseline"]["score"])
        text[-1] += (f"; the classical baseline on the same rows {table['baseline']['score']:.4f} (teacher minus "
                     f"baseline {gap:+.1f} points, one run each)")
    text[-1] += "."
    pct = student["pct_of_teacher"]
    text.append(f"Over {table['seed_count']} seeds the full recipe's student scores {_pm(student['score'])}"
                + (f", {_pm(pct, '.1f', '%')} of its teacher" if pct else "")
                + f", {student['speedup_vs_teacher']:.1f}x faster at batch 1 and "
                  f"{student['compression_vs_teacher']:.1f}x smaller.")
    targets = []
    if pct:
        verb = "reaches" if pct["mean"] >= PAPER["pct_with_strategies"] else "falls short of"
        targets.append(f"{verb} the paper's {PAPER['pct_with_strategies']:.0f}% of the teacher (mean over seeds)")
    verb = "reaches" if student["speedup_vs_teacher"] >= PAPER["speedup"] else "falls short of"
    targets.append(f"{verb} its {PAPER['speedup']}x speed-up over the teacher")
    text.append(f"The student {' and '.join(targets)}.")
    text += [comparison_sentence(c, metric) for c in table["comparisons"]]
    return " ".join(text)


def run_line(report: dict) -> str:
    """Command, date, machine, time and settings of a run, with the install when the report records one."""
    m, s = report["machine"], report["settings"]
    examples = f"{s['train']:,}" if s["train"] else "all"
    line = (f"Produced by `{report['command']}` on {report['date']}, {m['cpu']} ({m['cpus']} CPUs), torch "
            f"{m['torch']}, in {report['total_seconds'] / 60:.1f} minutes ({report['scale']} scale: {examples} "
            f"training examples per task, {s['num_aug']} augmented copies per example, {s['seeds']} seeds per "
            f"ablation row, {s['student_steps']} optimiser steps per student).")
    install = report.get("install")
    if install:
        minutes = install["seconds"] / 60
        if install["finished_before_run_s"] <= 120:
            line += (f" `make demo` installed the environment first ({minutes:.1f} minutes), so from a fresh clone "
                     f"it took {minutes + report['total_seconds'] / 60:.1f} minutes in all.")
        else:
            line += f" The environment had been installed earlier, in {minutes:.1f} minutes ({install['finished']})."
    return line
