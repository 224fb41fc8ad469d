"""A dataset directory's life cycle: plan, stage, publish by swapping, recover.

The rules every output shares (a file or someone else's directory refused, the marker, the lock) are
`zhkd.outputs`'. What is a dataset's own:

- A build runs into `OUT/.zhkd-staging/`; the old dataset, if any, is not touched while the pipeline
  runs: a build that fails leaves it exactly as it was. Its configuration hash is the manifest's (the
  published dataset's) and the staged manifest's (a complete build not yet swapped in).
- Publishing writes the whole new dataset in staging first (shards, dead letters, card, state files,
  manifest and its own `COMPLETED`), each file fsynced. Only then is it swapped in: `OUT/COMPLETED` goes
  (from here the directory is not a dataset), staged entries replace theirs, old shards and dead letters
  the new manifest does not list go, and `COMPLETED` comes last. A crash inside the swap leaves the
  staged dataset complete; the next run of the same configuration finishes the swap (`recover`).
- An unfinished build (no `COMPLETED`) is not a dataset: any build may start over in its place. A
  complete one is replaced only with `--overwrite`, and only by this swap.
Only names a build writes are ever removed; a file a user put beside a dataset stays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from zhkd.outputs import Found, inspect
from zhkd.pipelines import storage
from zhkd.pipelines.errors import PipelineError
from zhkd.shards import COMPLETED, MANIFEST

STAGING = ".zhkd-staging"
DEAD_LETTER = "dead_letter"
CARD = "README.md"
HISTOGRAM = "length_histogram.png"
STATE_FILES = ("dataset_info.json", "state.json")
_LEGACY_MARKER = ".zhkd-build.json"  # an unfinished build of an earlier zhkd: leftovers to clear


def _owned(name: str) -> bool:
    """The top-level names a build writes (and so may remove)."""
    return (name in (MANIFEST, CARD, HISTOGRAM, DEAD_LETTER, COMPLETED, _LEGACY_MARKER, *STATE_FILES)
            or name.startswith("data-") and ".arrow" in name)


@dataclass(frozen=True)
class Plan:
    build: bool  # run the pipeline
    message: str
    found: Found | None = None
    recover: bool = False  # a staged dataset of this configuration only needs swapping in


def _recorded_hash(path: str) -> str | None:
    """The config hash a manifest records (None when unreadable)."""
    try:
        return json.loads(storage.read_text(path)).get("config_hash")
    except (OSError, ValueError):
        return None


def plan_output(out: str, config_hash: str, *, overwrite: bool) -> Plan:
    """Decide what a build may do with `out`, without changing anything yet."""
    found = inspect(out, "dataset") if storage.is_local(out) else None
    names = storage.list_names(out)
    staging = storage.join(out, STAGING)
    if COMPLETED in storage.list_names(staging) and _recorded_hash(storage.join(staging, MANIFEST)) == config_hash:
        return Plan(True, f"an earlier build into {out} finished but was not swapped in; finishing that",
                    found, recover=True)
    if COMPLETED in names:
        previous = _recorded_hash(storage.join(out, MANIFEST))
        if previous == config_hash:
            return Plan(False, f"{out} is already built with this configuration ({config_hash[:12]}); nothing to do",
                        found)
        if not overwrite:
            raise PipelineError(f"{out} holds a dataset built with another configuration "
                                f"({str(previous)[:12]}, this run {config_hash[:12]}); pass --overwrite to replace it")
        return Plan(True, f"building a replacement for the dataset in {out}; the old one stays until the new one "
                          "is complete (--overwrite)", found)
    if found is None and names and STAGING not in names and _LEGACY_MARKER not in names:
        raise PipelineError(f"{out} is not empty and holds no zhkd build ({', '.join(names[:3])} ...); "
                            "choose a new or empty directory")
    if STAGING in names or _LEGACY_MARKER in names:
        return Plan(True, f"an earlier build into {out} did not finish; building again from the start", found)
    return Plan(True, f"building into {out}", found)


def start(out: str) -> str:
    """Clear what an unfinished earlier build left in staging; return the (empty) staging directory."""
    staging = storage.join(out, STAGING)
    storage.delete(staging)
    storage.delete(storage.join(out, _LEGACY_MARKER))
    return staging


def _kept_names(manifest: dict) -> tuple[set[str], set[str]]:
    """The top-level names and dead-letter files of the dataset a manifest describes."""
    top = {MANIFEST, CARD, HISTOGRAM, *STATE_FILES, *(s["file"] for s in manifest["shards"])}
    dead = {f"{reason}.jsonl" for reason, n in manifest["counts"]["dead_letter"].items() if n}
    if dead:
        top.add(DEAD_LETTER)
    return top, dead


def swap_in(out: str) -> None:
    """Replace the dataset in `out` by the complete one in staging (idempotent: a rerun after a crash
    at any point inside it finishes the same swap)."""
    staging = storage.join(out, STAGING)
    staged_manifest = storage.join(staging, MANIFEST)
    manifest = json.loads(storage.read_text(staged_manifest if storage.exists(staged_manifest)
                                            else storage.join(out, MANIFEST)))
    top, dead = _kept_names(manifest)
    storage.delete(storage.join(out, COMPLETED))
    storage.sync_dir(out)
    for name in sorted(top - {DEAD_LETTER}):
        if storage.exists(storage.join(staging, name)):  # not yet moved by an interrupted swap
            storage.move(storage.join(staging, name), storage.join(out, name))
    for letter in sorted(dead):
        if storage.exists(storage.join(staging, DEAD_LETTER, letter)):
            storage.move(storage.join(staging, DEAD_LETTER, letter), storage.join(out, DEAD_LETTER, letter))
    for name in storage.list_names(out):
        if _owned(name) and name not in top and name != COMPLETED:
            storage.delete(storage.join(out, name))
    for letter in storage.list_names(storage.join(out, DEAD_LETTER)):
        if letter not in dead:
            storage.delete(storage.join(out, DEAD_LETTER, letter))
    storage.sync_dir(out)
    storage.move(storage.join(staging, COMPLETED), storage.join(out, COMPLETED))
    storage.sync_dir(out)
    storage.delete(staging)
