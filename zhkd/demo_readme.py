"""Copy a demo run's account into the README, so everything a reader sees about a run is what it produced.

`python -m zhkd.demo_readme demo-out/report.json README.md` (or `make readme`) replaces the text
between the README's two markers with the run's command, date, machine, time (and install time, when
`make` recorded one), settings, summary table, the note on the teacher, the generated reading of the
tables and each task's ablation: all rendered from report.json, none of it typed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zhkd.demo_report import ablation_table, reading, run_line, summary_table, teacher_note
from zhkd.pipelines.errors import PipelineError

BEGIN = "<!-- demo-report:begin (written by `make readme` from demo-out/report.json; do not edit) -->"
END = "<!-- demo-report:end -->"


def markers(scale: str) -> tuple[str, str]:
    """The README's markers for a scale's block: a `make demo` run's (`small`, or the tests' `tiny`) are
    BEGIN and END; a `medium` or `full` run has its own block beside it, so publishing one never replaces
    the other."""
    if scale not in ("medium", "full"):
        return BEGIN, END
    return (f"<!-- demo-report:begin {scale} (written by `make readme OUT=...` from a {scale} run's report.json; "
            f"do not edit) -->", f"<!-- demo-report:end {scale} -->")


def section(report: dict) -> str:
    return "\n".join([
        run_line(report), "",
        summary_table(report["summary"]), "",
        teacher_note(report["summary"]), "",
        "How to read it (generated from the run's figures: a gain is claimed only where the 95% interval of the "
        "paired difference over seeds excludes zero):", "",
        *(line for task in report["tasks"] for line in (reading(task), "")),
        *(line for task in report["tasks"] for line in (
            f"Ablation, {task['title']}, on {task['evaluation']['test']['rows']:,} test rows "
            f"({task['ablation']['seed_count']} seeds per row):", "", ablation_table(task), "")),
    ]).rstrip("\n")


def publish(report_path: Path, readme_path: Path) -> None:
    try:
        report = json.loads(report_path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise PipelineError(f"{report_path}: not a readable demo report ({e})") from None
    text = readme_path.read_text("utf-8")
    scale = report.get("scale", "small") if isinstance(report, dict) else "small"
    begin, end = markers(scale)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise PipelineError(f"{readme_path}: needs exactly one pair of demo-report markers for the {scale} scale, "
                            f"in order ({begin} ... {end})")
    try:
        body = section(report)
    except (KeyError, TypeError, IndexError) as e:  # a report of an older zhkd, or edited by hand
        raise PipelineError(f"{report_path}: not a demo report this zhkd can read (missing or odd {e})") from None
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    readme_path.write_text(f"{head}{begin}\n{body}\n{end}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m zhkd.demo_readme REPORT_JSON README", file=sys.stderr)
        return 2
    from zhkd.cli import reporting_errors

    def publish_and_say() -> int:
        publish(Path(args[0]), Path(args[1]))
        print(f"{args[1]}: demo table from {args[0]}")
        return 0

    return reporting_errors("demo_readme", publish_and_say)


if __name__ == "__main__":
    sys.exit(main())
