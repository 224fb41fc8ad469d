"""The output directory's life cycle: refuse, skip, clean, stage, publish.

A build writes into `OUT/.zhkd-staging/` and records its configuration in `OUT/.zhkd-build.json`
before the pipeline starts. Only after the pipeline has finished does the driver move the shards into
place and write the manifest, with `COMPLETED` last. So an interrupted run never looks complete, and
its rerun (same configuration) cleans the leftovers and builds the same bytes again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from zhkd.pipelines import storage
from zhkd.pipelines.errors import PipelineError
from zhkd.shards import COMPLETED, MANIFEST

STAGING = ".zhkd-staging"
MARKER = ".zhkd-build.json"
DEAD_LETTER = "dead_letter"
CARD = "README.md"
HISTOGRAM = "length_histogram.png"
_OWNED_FILES = (MANIFEST, "state.json", "dataset_info.json", CARD, HISTOGRAM, DEAD_LETTER, STAGING, MARKER)


def _owned(name: str) -> bool:
    return name in _OWNED_FILES or name == COMPLETED or name.startswith("data-") and ".arrow" in name


@dataclass(frozen=True)
class Plan:
    build: bool
    message: str


def _recorded_hash(path: str) -> str | None:
    """The config hash a manifest or build marker records (None when unreadable)."""
    try:
        return json.loads(storage.read_text(path)).get("config_hash")
    except (OSError, ValueError):
        return None


def plan_output(out: str, config_hash: str, *, overwrite: bool) -> Plan:
    """Decide what a build may do with `out`, without changing anything yet."""
    names = storage.list_names(out)
    if COMPLETED in names:
        previous = _recorded_hash(storage.join(out, MANIFEST))
        if previous == config_hash:
            return Plan(False, f"{out} is already built with this configuration ({config_hash[:12]}); nothing to do")
        if not overwrite:
            raise PipelineError(f"{out} holds a dataset built with another configuration "
                                f"({str(previous)[:12]}, this run {config_hash[:12]}); pass --overwrite to replace it")
        return Plan(True, f"replacing the dataset in {out} (--overwrite)")
    if MARKER in names:
        if _recorded_hash(storage.join(out, MARKER)) == config_hash:
            return Plan(True, f"an earlier build into {out} did not finish; building it again from the start")
        if not overwrite:
            raise PipelineError(f"{out} holds an unfinished build with another configuration; "
                                "pass --overwrite to replace it")
        return Plan(True, f"replacing an unfinished build in {out} (--overwrite)")
    if names:
        raise PipelineError(f"{out} is not empty and holds no zhkd build ({', '.join(names[:3])} ...); "
                            "choose a new or empty directory")
    return Plan(True, f"building into {out}")


def clean(out: str) -> None:
    """Remove what a previous build left, `COMPLETED` first so a half-cleaned directory never looks done."""
    storage.delete(storage.join(out, COMPLETED))
    for name in storage.list_names(out):
        if _owned(name):
            storage.delete(storage.join(out, name))


def start(out: str, settings: dict, config_hash: str) -> str:
    """Clean leftovers, record the configuration, and return the staging directory."""
    clean(out)
    storage.write_text(storage.join(out, MARKER),
                       json.dumps({"config_hash": config_hash, "config": settings}, ensure_ascii=False, indent=2))
    return storage.join(out, STAGING)
