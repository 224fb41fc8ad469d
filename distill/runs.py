"""What `finetune` and `distil` share: the claim on the output directory, the run context, and the result.

The claim goes through `zhkd.outputs` (the one guard every command uses): an output that is an input, a
file, someone else's directory, a finished run, an interrupted one without `resume`, or a resume with
other settings is refused before anything is written. The settings recorded in the output's marker are
the config's fields (less those that change how a run goes, not what it computes) and the content
identity of every input, so a resume over a changed training file is refused too.

Light at import (no torch): the configs that use it are built while the command line is parsed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

from zhkd.outputs import Claim

# Fields that change how a run goes, not what it computes: a resumed run may differ in them.
NOT_SETTINGS = ("output", "resume", "num_workers")


@dataclass
class RunResult:
    """A training run's outcome: `ran` is False when OUT already held this finished run (resumed); `rank`
    is this process's under torchrun (rank 0 reports)."""

    ran: bool
    output: Path
    summary: dict
    rank: int = 0


def _identity(path: Path) -> str | None:
    """What an input holds, by content: a file's sha256, a dataset's config hash, a checkpoint's weights."""
    from zhkd.models import weights_fingerprint
    from zhkd.shards import MANIFEST, file_sha256

    if path.is_file():
        return file_sha256(path)
    if (path / MANIFEST).is_file():
        return json.loads((path / MANIFEST).read_text("utf-8")).get("config_hash")
    if path.is_dir():
        return weights_fingerprint(path)
    return None


def _flat(value, prefix: str = "") -> dict:
    """A config as `name: JSON value` pairs; a nested config's fields as `config.field`."""
    out = {}
    for f in fields(value):
        if f.name in NOT_SETTINGS:
            continue
        item = getattr(value, f.name)
        if is_dataclass(item):
            out.update(_flat(item, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = str(item) if isinstance(item, Path) else list(item) if isinstance(item, tuple) \
                else item
    return out


def run_settings(config, inputs: Iterable[str | Path | None]) -> dict:
    """Every setting of `config` that shapes the run, with the content identity of each input that exists
    here (a hub id or a catalogue shape is named by its name, which the settings hold)."""
    identities = {str(p): _identity(Path(p)) for p in inputs if p is not None and Path(p).exists()}
    return {**_flat(config), "inputs": identities}


def prepare_output(config, kind: str, *, inputs: list) -> Claim | None:
    """Claim `config.output` for a run of `kind` (see `zhkd.outputs.claim_run`); None when it is complete.

    Under torchrun only rank 0 checks, locks and marks (the RANK variable is read: `distributed()` has
    not started yet).
    """
    from zhkd.outputs import claim_run, refuse_inputs

    refuse_inputs(config.output, inputs, directory=True)
    rank = int(os.environ.get("RANK", "0"))
    return claim_run(config.output, kind, run_settings(config, inputs), resume=config.resume, rank=rank)


def finished(out_dir: Path) -> RunResult:
    """The result of a run that an earlier call already finished."""
    from zhkd.distill.train import SUMMARY

    return RunResult(False, out_dir, json.loads((out_dir / SUMMARY).read_text("utf-8")))


def make_run(out_dir: Path, task: str, label_names: list[str], tokenizer, dev_rows, rank: int, world: int,
             device: str):
    from zhkd.distill.train import LOG, JsonlLog, Run

    return Run(out_dir=out_dir, task=task, label_names=label_names, tokenizer=tokenizer, dev_rows=dev_rows,
               log=JsonlLog(out_dir / LOG, enabled=rank == 0), rank=rank, world_size=world, device=device)
