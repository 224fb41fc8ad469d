"""Render bench/README.md's results from the JSON files the benches wrote, so every figure shown there
is one a run produced, with its command, date, machine and load.

    python bench/report.py [--results bench/results] [--readme bench/README.md]    (or: make bench-report)

Each `bench/results/*.json` holds `meta` and `summary` rows (see benchlib.py). The text between the
README's two markers is replaced; the rest of the README is left as written. A missing or unreadable
result, or missing markers, is an error of one line (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchlib import verdict  # bench/ is on the path when this script runs

HERE = Path(__file__).resolve().parent
BEGIN = "<!-- bench-report:begin (written by `make bench-report` from bench/results/*.json; do not edit) -->"
END = "<!-- bench-report:end -->"
# The order benches appear in; any other result file follows, by name.
ORDER = ("augment_bench", "label_bench", "forward_bench", "reader_bench", "build_bench", "pretrain_bench",
         "length_bench", "logit_bits_bench", "ddp_bench")


class ReportError(Exception):
    pass


def load_results(results_dir: Path) -> list[dict]:
    files = sorted(results_dir.glob("*.json"))
    if not files:
        raise ReportError(f"{results_dir}: no bench results (*.json) there")
    results = []
    for path in files:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise ReportError(f"{path}: not a readable bench result ({e})") from None
        if not isinstance(data, dict) or "meta" not in data or "summary" not in data:
            raise ReportError(f"{path}: not a bench result (needs 'meta' and 'summary')")
        data["_file"] = path.name
        results.append(data)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(results, key=lambda r: (rank.get(r["meta"]["bench"], len(ORDER)), r["_file"]))


def _ratio(row: dict) -> str:
    if row["ratio"] is None:
        return "—"
    text = f"{row['ratio']:.2f}x"
    if row.get("interval"):
        text += f" ± {row['interval']:.2f}"
    return text


def _target(row: dict) -> str:
    """The verdict is made here from the row's ratio, interval and target (not read from its `met`), so
    every result file, old or new, is judged by the same rule."""
    decided = verdict(row["ratio"], row.get("interval"), row.get("target"))
    if decided is None:
        return "—"
    return f"≥ {row['target']:g}x: {'**missed**' if decided == 'missed' else decided}"


def section(result: dict) -> str:
    m = result["meta"]
    machine = m["machine"]
    load = f"load average {m['load_average_before'][0]:.1f} before, {m['load_average_after'][0]:.1f} after"
    lines = [
        f"### {m['bench']}", "",
        f"`{m['command']}` — {m['date']}, commit {m['commit']}, {machine['cpu']} ({machine['cpus']} CPUs), "
        f"Python {machine['python']}, {load}, {m['seconds']:.0f} s. File: `bench/results/{result['_file']}`.",
        "",
        "| comparison | zhkd | peer | ratio (± 95% over rounds) | target | notes |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["summary"]:
        lines.append(f"| {row['comparison']} | {row['ours']} | {row['peer']} | {_ratio(row)} | {_target(row)} | "
                     f"{row.get('note') or ''} |")
    return "\n".join(lines)


def render(results: list[dict]) -> str:
    return "\n\n".join(section(r) for r in results)


def publish(results_dir: Path, readme: Path) -> None:
    body = render(load_results(results_dir))
    try:
        text = readme.read_text("utf-8")
    except OSError as e:
        raise ReportError(f"{readme}: cannot read it ({e})") from None
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReportError(f"{readme}: needs exactly one pair of bench-report markers, in order")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    readme.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    args = parser.parse_args(argv)
    try:
        publish(args.results, args.readme)
    except ReportError as e:
        print(f"bench report: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.readme}: tables from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
