"""What every bench shares: the record of where and how it ran, interleaved timing, intervals, results.

A bench compares zhkd with a peer on the same rows, and a shared machine's load moves single timings by
several times. So contenders run in interleaved rounds (A, B, B, A, A, B, ...: the order alternates, so
neither always runs on a warm cache or after the other's garbage), each round on the same rows, and
a ratio is reported with its per-round 95% interval. Every result file carries the command that made
it, the date, the machine and its load, and `bench/report.py` renders `bench/README.md` from the files.

The result of a bench is a JSON object with `meta` (from `meta()`) and `summary`: a list of rows
`{"comparison", "ours", "peer", "unit", "ratio", "interval", "target", "met", "verdict", "note"}` (ratio =
ours / peer, higher is better for zhkd), the rows the report shows. A target is met only when the whole
interval clears it (see `verdict`).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else []):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        # Uncommitted changes to the code (results files written by other benches do not count).
        status = ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                  ":(exclude)bench/results"]
        dirty = subprocess.run(status, capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line() -> str:
    """The command as a user types it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def meta(bench: str, started: float, load_before: tuple[float, float, float], **extra) -> dict:
    """Where, when and how a bench ran (call at its end; `started` is a time.time() from its start)."""
    return {
        "bench": bench, "command": command_line(), "commit": git_commit(),
        "date": datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.time() - started, 1),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True)},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        **extra,
    }


def interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval (Student's t, `zhkd.distill.stats`; 0 for a single value)."""
    from zhkd.distill.stats import mean_interval

    if len(values) < 2:
        return statistics.fmean(values), 0.0
    found = mean_interval(values)
    return found.mean, found.half_width


def interleave(rounds: int, contenders: dict[str, Callable[[int], dict]]) -> dict[str, list[dict]]:
    """Round r calls every contender with r, the order reversed every other round (A B, B A, A B, ...).
    Each call returns its own figures, and is timed here: `seconds` (wall) and `cpu_seconds` (this
    process) are added. Returns each contender's list of rounds."""
    names = list(contenders)
    out: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            wall, cpu = time.perf_counter(), time.process_time()
            figures = contenders[name](r)
            figures["seconds"] = time.perf_counter() - wall
            figures["cpu_seconds"] = time.process_time() - cpu
            out[name].append(figures)
    return out


def rate_ratio(ours: list[dict], peer: list[dict], count: str) -> dict:
    """Ours / peer in `count` per second: over all rounds (totals), and per round with its interval."""
    def rate(rounds: list[dict], key: str = "seconds") -> float:
        return sum(r[count] for r in rounds) / max(1e-12, sum(r[key] for r in rounds))

    per_round = [(a[count] / max(1e-12, a["seconds"])) / max(1e-12, b[count] / max(1e-12, b["seconds"]))
                 for a, b in zip(ours, peer, strict=True)]
    mean, half = interval(per_round)
    return {"ours_per_s": rate(ours), "peer_per_s": rate(peer), "ratio": rate(ours) / max(1e-12, rate(peer)),
            "ratio_cpu": rate(ours, "cpu_seconds") / max(1e-12, rate(peer, "cpu_seconds")),
            "round_ratio_mean": mean, "round_ratio_interval": half, "rounds": len(per_round)}


def verdict(ratio: float | None, interval: float | None, target: float | None) -> str | None:
    """"met" when the ratio's 95% interval lies at or above the target, "missed" when it lies below, and
    "no measurable difference" when it straddles the target: a ratio alone is one draw of a noisy
    measurement, and a claim holds only when it survives the rounds. None when there is no target."""
    if target is None or ratio is None:
        return None
    half = interval or 0.0
    if ratio - half >= target:
        return "met"
    if ratio + half < target:
        return "missed"
    return "no measurable difference"


def summary_row(comparison: str, ours: str, peer: str, unit: str, ratio: float | None, *,
                interval: float | None = None, target: float | None = None, note: str = "") -> dict:
    """One row of the rendered table; `ratio` None for a measurement that is not a ratio (its figures are
    in `ours` and `peer`). `met` is True only for the verdict "met" (None without a target)."""
    decided = verdict(ratio, interval, target)
    return {"comparison": comparison, "ours": ours, "peer": peer, "unit": unit, "ratio": ratio,
            "interval": interval, "target": target, "met": None if decided is None else decided == "met",
            "verdict": decided, "note": note}


def write_result(path: Path, result: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return path
