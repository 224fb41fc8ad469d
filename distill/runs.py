"""What `finetune` and `distil` share: the output directory's guard, the run context, and the result.

Light at import (no torch): the configs that use it are built while the command line is parsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from zhkd.distill.errors import DistillError


@dataclass
class RunResult:
    """A training run's outcome: `ran` is False when OUT already held this finished run (resumed); `rank`
    is this process's under torchrun (rank 0 reports)."""

    ran: bool
    output: Path
    summary: dict
    rank: int = 0


def prepare_output(out_dir: Path, *, resume: bool) -> bool:
    """False when the run in `out_dir` is already complete (nothing to do); refuses to train over a run."""
    from zhkd.distill.train import CHECKPOINT, SUMMARY

    summary = out_dir / SUMMARY
    if summary.exists() and json.loads(summary.read_text("utf-8")).get("complete"):
        if resume:
            return False
        raise DistillError(f"{out_dir} holds a finished run; choose another --output")
    if not resume and (out_dir / CHECKPOINT).exists():
        raise DistillError(f"{out_dir} holds an interrupted run; pass --resume to continue it, or another --output")
    if resume and not (out_dir / CHECKPOINT).exists():
        raise DistillError(f"{out_dir}: no checkpoint to resume from")
    out_dir.mkdir(parents=True, exist_ok=True)
    return True


def finished(out_dir: Path) -> RunResult:
    """The result of a run that an earlier call already finished."""
    from zhkd.distill.train import SUMMARY

    return RunResult(False, out_dir, json.loads((out_dir / SUMMARY).read_text("utf-8")))


def make_run(out_dir: Path, task: str, label_names: list[str], tokenizer, dev_rows, rank: int, world: int,
             device: str):
    from zhkd.distill.train import LOG, JsonlLog, Run

    return Run(out_dir=out_dir, task=task, label_names=label_names, tokenizer=tokenizer, dev_rows=dev_rows,
               log=JsonlLog(out_dir / LOG, enabled=rank == 0), rank=rank, world_size=world, device=device)
