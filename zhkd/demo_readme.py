"""Copy a demo run's summary into the README, so the table a reader sees is the one a run produced.

`python -m pipelines.demo_readme demo-out/report.json README.md` (or `make readme`) replaces the text
between the README's two markers with the run's command, date, machine, settings and summary table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zhkd.demo import ablation_table, summary_table
from zhkd.pipelines.errors import PipelineError

BEGIN = "<!-- demo-report:begin (written by `make readme` from demo-out/report.json; do not edit) -->"
END = "<!-- demo-report:end -->"


def section(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    examples = f"{s['train']:,}" if s["train"] else "all"
    return "\n".join([
        f"Produced by `{report['command']}` on {report['date']}, {m['cpu']} ({m['cpus']} CPUs), torch {m['torch']}, "
        f"in {report['total_seconds'] / 60:.1f} minutes ({report['scale']} scale: {examples} training examples per "
        f"task, {s['mlm_steps']} MLM steps, teacher shape `{s['mlm_shape']}`, {s['num_aug']} augmented copies per "
        f"example, {s['student_steps']} steps per student stage).",
        "",
        summary_table(report["summary"]),
        *(line for task in report["tasks"] for line in (
            "", f"Ablation, {task['title']}, on {task['evaluation']['test']['rows']:,} test rows:", "",
            ablation_table(task))),
    ])


def publish(report_path: Path, readme_path: Path) -> None:
    try:
        report = json.loads(report_path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise PipelineError(f"{report_path}: not a readable demo report ({e})") from None
    text = readme_path.read_text("utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise PipelineError(f"{readme_path}: needs exactly one pair of demo-report markers, in order")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    readme_path.write_text(f"{head}{BEGIN}\n{section(report)}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pipelines.demo_readme REPORT_JSON README", file=sys.stderr)
        return 2
    try:
        publish(Path(args[0]), Path(args[1]))
    except PipelineError as e:
        print(f"demo_readme: error: {e}", file=sys.stderr)
        return 2
    print(f"{args[1]}: demo table from {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
