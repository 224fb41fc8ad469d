"""The `zhkd build` driver: check the teacher and inputs, decide what to do with OUT, run the Beam
pipeline, then publish: shards and dead letters into place, data card, manifest, `COMPLETED` last."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from zhkd.outputs import claim, refuse_inputs
from zhkd.pipelines import beam_options, dask_cluster, outputs, storage
from zhkd.pipelines.build_config import MIN_BUCKETS, BuildConfig, config_hash, dtype_for, resolve_device
from zhkd.pipelines.build_pipeline import LENGTH_BIN, RESULTS, build_pipeline, read_results
from zhkd.pipelines.card import length_histogram, render_card
from zhkd.pipelines.errors import PipelineError
from zhkd.pipelines.label_filter import LabelFilter
from zhkd.pipelines.sink import RUNS
from zhkd.pipelines.sources import expand_inputs, read_unit
from zhkd.pipelines.teacher import TeacherInfo, inspect_teacher
from zhkd.rows import REASONS, infer_label_names, label_values
from zhkd.shards import COMPLETED, FORMAT_VERSION, MANIFEST, ShardInfo, finalize, schema_for, validate

FILTER_REASONS = ("disagrees_with_gold", "low_confidence")


@dataclass
class BuildResult:
    built: bool
    message: str
    manifest: dict = field(default_factory=dict)
    wall_s: float = 0.0


def choose_labels(config: BuildConfig, teacher: TeacherInfo) -> tuple[list[str] | None, str]:
    """The label names and where they came from; None means "infer them from the data"."""
    if teacher.label_names is not None:
        if config.labels is not None and tuple(config.labels) != teacher.label_names:
            raise PipelineError(f"--labels {','.join(config.labels)} differ from the teacher's labels "
                                f"{','.join(teacher.label_names)} (its logits follow the teacher's order)")
        return list(teacher.label_names), "teacher config"
    if config.labels is not None:
        if len(config.labels) != teacher.num_labels:
            raise PipelineError(f"--labels names {len(config.labels)} labels, the teacher has {teacher.num_labels}")
        return list(config.labels), "--labels"
    return None, "inferred from the data (sorted)"


def _settings(config: BuildConfig, teacher: TeacherInfo, units, policy_config: dict,
              labels: list[str] | None) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "build": config.hashed(),
        "inputs": [[u.kind, u.path, u.identity, u.start, u.stop, u.split] for u in units],
        "teacher": {"weights_sha256": teacher.weights_sha256, "tokenizer_sha256": teacher.tokenizer_sha256,
                    "max_length": config.max_length or teacher.max_length},
        "labels": labels,
        "augmentation": policy_config,
    }


def _counts(tally: dict[str, int]) -> dict:
    dead = {reason: tally.get(f"dead_letter/{reason}", 0) for reason in REASONS}
    filtered = {reason: tally.get(f"filtered/{reason}", 0) for reason in FILTER_REASONS}
    variants = {"original": tally.get("variants/original", 0), "augmented": tally.get("variants/augmented", 0)}
    variants["total"] = variants["original"] + variants["augmented"]
    return {
        "rows_in": tally.get("rows_in", 0), "blank_lines": tally.get("blank_lines", 0),
        "valid": tally.get("valid", 0), "dead_letter": dead, "dead_letter_total": sum(dead.values()),
        "control_chars_stripped": tally.get("control_chars_stripped", 0), "truncated": tally.get("truncated", 0),
        "variants": variants, "duplicates": tally.get("duplicates", 0),
        "labelled": tally.get("labelled", 0), "teacher_truncated": tally.get("teacher_truncated", 0),
        "teacher_batches": tally.get("teacher_batches", 0),
        "filtered": filtered, "filtered_total": sum(filtered.values()),
        "id_collisions": tally.get("id_collisions", 0),
        "written": tally.get("written", 0),
        "written_original": tally.get("written/original", 0), "written_augmented": tally.get("written/augmented", 0),
    }


class IntegrityError(PipelineError):
    """The run lost or duplicated rows between stages: nothing is published (no COMPLETED)."""


def check_reconciles(counts: dict) -> None:
    """Every row is accounted for from input to output. A mismatch is never the user's doing: it means
    the runner lost rows (seen with Beam 2.77's local multi_processing mode at 100k examples before
    the work was spread over small groups; see docs/build.md)."""
    checks = [
        ("rows in = valid + dead-lettered", counts["rows_in"], counts["valid"] + counts["dead_letter_total"]),
        ("valid = originals", counts["valid"], counts["variants"]["original"]),
        ("variants - duplicates = labelled", counts["variants"]["total"] - counts["duplicates"], counts["labelled"]),
        ("labelled - filtered - id collisions = written",
         counts["labelled"] - counts["filtered_total"] - counts["id_collisions"], counts["written"]),
    ]
    broken = [f"{name}: {a} != {b}" for name, a, b in checks if a != b]
    if broken:
        raise IntegrityError("rows went missing during the run (" + "; ".join(broken) + "); nothing was "
                             "published and the output stays unfinished; rerun it (in-process or on Dataflow)")


def _stats(tally: dict[str, int]) -> dict:
    def part(prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in sorted(tally.items()) if k.startswith(prefix)}

    agreement = {}
    for kind in ("original", "augmented"):
        labelled, agree = tally.get(f"agreement/{kind}/labelled", 0), tally.get(f"agreement/{kind}/agree", 0)
        agreement[kind] = {"labelled": labelled, "agree": agree, "rate": agree / labelled if labelled else None}
    return {
        "labels": {kind: part(f"labels/{kind}/") for kind in ("original", "augmented")},
        "agreement": agreement,
        "ops": part("ops/"),
        "length_bin": LENGTH_BIN,
        "lengths": {kind: part(f"length/{kind}/") for kind in ("original", "augmented")},
        "teacher_ran": part("teacher_ran/"),  # device/dtype -> rows, as reported by the workers
    }


def _publish(out: str, staging: str, infos: list[ShardInfo], manifest: dict, label_names: list[str],
             schema_metadata: dict, input_desc: str) -> dict:
    """Complete the new dataset in staging (card, state files, manifest, its COMPLETED last), then swap it in.

    Until `swap_in` starts, the previous dataset in `out` (if any) is whole and valid.
    """
    schema = schema_for(manifest["task"], label_names=label_names, metadata=schema_metadata)
    preview = {**manifest, "label_names": label_names, "total_rows": sum(s.rows for s in infos)}
    with tempfile.TemporaryDirectory(prefix="zhkd-publish-") as tmp:
        local = Path(staging) if storage.is_local(staging) else Path(tmp)
        (local / outputs.CARD).write_text(render_card(preview, input_desc=input_desc), encoding="utf-8")
        length_histogram(manifest["stats"]["lengths"], LENGTH_BIN, local / outputs.HISTOGRAM)
        full = finalize(local, schema, infos, manifest)
        if not storage.is_local(staging):
            for name in [outputs.CARD, outputs.HISTOGRAM, *outputs.STATE_FILES, MANIFEST, COMPLETED]:  # COMPLETED last
                storage.put_file(str(local / name), storage.join(staging, name))
    outputs.swap_in(out)
    return full


def infer_labels(config: BuildConfig, units) -> list[str]:
    """Label names from the data (sorted), read here before the run: a label set that cannot fit the
    teacher is refused before the teacher labels anything."""
    values = [v for unit in units for record in read_unit(unit) for v in label_values(config.task, config.fields,
                                                                                         record)]
    return infer_label_names(values)


def _no_rows_message(out: str, staging: str, counts: dict) -> str:
    dead = ", ".join(f"{r} {n:,}" for r, n in counts["dead_letter"].items() if n)
    first = ""
    for name in storage.list_names(storage.join(staging, outputs.DEAD_LETTER)):
        letter = json.loads(storage.read_text(storage.join(staging, outputs.DEAD_LETTER, name)).split("\n", 1)[0])
        first = f"; first: {letter['source']}:{letter['position']} {letter['reason']}"
        break
    return (f"no valid row to publish: {counts['rows_in']:,} rows in, {counts['dead_letter_total']:,} "
            f"dead-lettered ({dead or 'none'}{first}); nothing was published (the dead letters are in "
            f"{storage.join(staging, outputs.DEAD_LETTER)})")


def summary_lines(manifest: dict, wall_s: float) -> list[str]:
    c = manifest["counts"]
    dead = ", ".join(f"{r} {n:,}" for r, n in c["dead_letter"].items() if n) or "none"
    filtered = ", ".join(f"{r} {n:,}" for r, n in c["filtered"].items() if n) or "none"
    agreement = manifest["stats"]["agreement"]
    rates = ", ".join(f"{kind} {part['rate']:.1%}" for kind, part in agreement.items() if part["rate"] is not None)
    return [
        f"rows in {c['rows_in']:,}  valid {c['valid']:,}  dead-lettered {c['dead_letter_total']:,} ({dead})",
        f"variants {c['variants']['total']:,} ({c['variants']['original']:,} originals + "
        f"{c['variants']['augmented']:,} augmented)  duplicates {c['duplicates']:,}",
        f"labelled {c['labelled']:,}  filtered {c['filtered_total']:,} ({filtered})  "
        + (f"id collisions {c['id_collisions']:,}  " if c["id_collisions"] else "")
        + f"written {c['written']:,} in {len(manifest['shards'])} shards",
        f"teacher agreement with gold: {rates or 'no labelled rows'}",
        f"wall time {wall_s:.1f} s ({c['written'] / max(wall_s, 1e-9):,.0f} rows/s written)",
    ]


# A local Dask cluster's tasks per stage, per worker process: a stage's last task leaves the other workers
# idle (9 tasks on 2 workers idled one for a ninth of each stage), yet every partition feeding a grouping
# costs it tiny tasks (about partitions^1.5 to ^2 of them), so not many more.
DASK_PARTITIONS_PER_WORKER = 8
# Dask sends a group to a partition by a hash of its key, at random: with few groups per partition some
# partitions get three and some none (8 buckets in 9 partitions left 4 empty), so many groups per partition.
BUCKETS_PER_PARTITION = 4


def default_buckets(flags: dict, local_workers: int, on_dask: bool = False) -> int:
    """Work groups when `--num-buckets` is not given: on a local Dask cluster BUCKETS_PER_PARTITION per
    partition (`dask_partitions`); else 4 per worker process (8 cores per Dataflow worker assumed); at
    least MIN_BUCKETS."""
    if on_dask and local_workers:
        return max(MIN_BUCKETS, BUCKETS_PER_PARTITION * DASK_PARTITIONS_PER_WORKER * local_workers)
    workers = local_workers or int(flags.get("direct_num_workers") or 0)
    workers = max(workers, 8 * int(flags.get("max_num_workers") or flags.get("num_workers") or 0))
    return max(MIN_BUCKETS, 4 * workers)


def dask_partitions(buckets: int, local_workers: int) -> int:
    """Dask partitions (`--dask_npartitions`) when not given: DASK_PARTITIONS_PER_WORKER per process of a
    local cluster, at most one per bucket; one per bucket on a named cluster (its size is not known here)."""
    return min(buckets, DASK_PARTITIONS_PER_WORKER * local_workers) if local_workers else buckets


def _run(pipeline):
    """Run and wait; a Dask client Beam opened is closed even when the run fails."""
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        dask_cluster.close_client(result)
    return result


@contextlib.contextmanager
def _engine(flags: dict, dask_workers: int | None, log: Callable[[str], None]) -> Iterator[tuple[dict, int]]:
    """The Beam flags to run with, and the local worker processes they share the cores with (0: not
    known here). For Dask without a named cluster, a local cluster lives as long as the build."""
    if not beam_options.is_dask(flags) or beam_options.names_dask_cluster(flags):
        yield flags, 0
        return
    workers = dask_workers or os.cpu_count() or 1
    log(f"zhkd build: starting a local Dask cluster of {workers} worker processes")
    with dask_cluster.local_cluster(workers) as address:
        yield {**flags, "dask_client_address": address}, workers


def _check_running(**settings: int | None) -> None:
    """The running settings (not part of the configuration, so not checked by BuildConfig)."""
    for name, value in settings.items():
        if value is not None and value < 1:
            raise PipelineError(f"--{name.replace('_', '-')} must be at least 1")


def build(config: BuildConfig, beam_flags: dict | None = None, *, overwrite: bool = False,
          teacher_copies: int | None = None, num_buckets: int | None = None, dask_workers: int | None = None,
          log: Callable[[str], None] = print) -> BuildResult:
    """Build the dataset `config` describes; a no-op when OUT already holds exactly this build.
    `num_buckets` (work groups) and `dask_workers` (a local Dask cluster's size) never change the bytes."""
    import apache_beam as beam
    import torch

    from zhkd.augment.policy import make_policy

    started = time.monotonic()
    _check_running(num_buckets=num_buckets, dask_workers=dask_workers, teacher_copies=teacher_copies)
    config = resolve_device(config, torch.cuda.is_available())
    flags = dict(beam_flags or {})
    options = beam_options.make_options(flags)
    if beam_options.is_dask(flags):
        dask_cluster.require_dask()  # before anything is read or written
    teacher = inspect_teacher(config.teacher, config.task)
    labels, label_source = choose_labels(config, teacher)
    units = expand_inputs(config.inputs, config.input_format, config.split)
    out = config.output.rstrip("/") if not storage.is_local(config.output) else os.path.abspath(config.output)
    if storage.is_local(out):
        refuse_inputs(out, [u.path for u in units] + [config.teacher, config.mlm_model, config.user_dict],
                      directory=True)
    if labels is None:
        labels = infer_labels(config, units)
        if len(labels) != teacher.num_labels:
            raise PipelineError(f"the data has {len(labels)} labels ({', '.join(labels) or 'none'}), the teacher "
                                f"{teacher.num_labels}; pass --labels in the teacher's order")
    policy = make_policy(config.task, num_aug=config.num_aug, ops=config.ops, seed=config.seed,
                         mlm_model=config.mlm_model, user_dict=config.user_dict, device=config.device)
    settings = _settings(config, teacher, units, policy.config(), labels)
    digest = config_hash(settings)
    dry_run = beam_options.is_dry_run(options)
    plan = outputs.plan_output(out, digest, overwrite=overwrite)
    log(f"zhkd build: {plan.message}")
    if not plan.build:
        return BuildResult(False, plan.message)
    max_length = config.max_length or teacher.max_length
    schema_metadata = {"teacher": teacher.name, "teacher_weights_sha256": teacher.weights_sha256,
                       "tokenizer_sha256": teacher.tokenizer_sha256, "config_hash": digest}

    def run_graph(staging: str, show_progress: bool):
        """The build's graph on the chosen engine (a local Dask cluster lives as long as this run)."""
        with _engine(flags, dask_workers, log) as (run_flags, local_workers):
            on_dask = beam_options.is_dask(run_flags)
            buckets = num_buckets or default_buckets(run_flags, local_workers, on_dask)
            if on_dask and not (run_flags.get("dask_npartitions") or run_flags.get("dask_partition_size")):
                run_flags = {**run_flags, "dask_npartitions": dask_partitions(buckets, local_workers)}
            run_options = beam_options.make_options(run_flags)
            pipeline = beam.Pipeline(options=run_options)
            build_pipeline(pipeline, config=config, units=units, staging=staging, label_names=labels,
                           teacher_max_length=max_length, pad_token_id=teacher.pad_token_id,
                           metadata=schema_metadata, num_buckets=buckets, teacher_copies=teacher_copies,
                           parallel_tokenizer=not beam_options.shares_cores(run_options, local_workers),
                           show_progress=show_progress and (beam_options.is_local(run_options) or local_workers > 0))
            log(f"zhkd build: running on {beam_options.runner_name(run_options)} ({len(units)} input units, "
                f"{buckets} buckets, {config.num_shards} shards, teacher on {config.device})")
            return _run(pipeline)

    if dry_run:
        run_graph(storage.join(out, outputs.STAGING), show_progress=False)
        message = f"dry run: the job was translated for {beam_options.runner_name(options)} and not submitted"
        log(f"zhkd build: {message}")
        return BuildResult(False, message)
    with claim(out, "dataset", found=plan.found) if storage.is_local(out) else contextlib.nullcontext():
        if plan.recover:
            outputs.swap_in(out)
            full = validate(out, check_checksums=False)
            log(f"zhkd build: wrote {out}")
            return BuildResult(True, f"wrote {out}", full, time.monotonic() - started)
        staging = outputs.start(out)
        state = str(run_graph(staging, show_progress=True).state)
        if "DONE" not in state:
            raise PipelineError(f"the pipeline ended in state {state}; {out} is left as it was (rerun to retry)")
        full = _finish(config, out, staging, teacher, policy, settings, digest, labels, label_source, max_length,
                       schema_metadata)
    wall = time.monotonic() - started
    for line in summary_lines(full, wall):
        log(f"zhkd build: {line}")
    log(f"zhkd build: wrote {out}")
    return BuildResult(True, f"wrote {out}", full, wall)


def _finish(config: BuildConfig, out: str, staging: str, teacher: TeacherInfo, policy, settings: dict, digest: str,
            labels: list[str], label_source: str, max_length: int, schema_metadata: dict) -> dict:
    """Check what the pipeline left in staging (every row accounted for, at least one written), then publish."""
    results = read_results(staging)
    tally = results["counts"]
    counts = _counts(tally)
    check_reconciles(counts)
    if counts["written"] == 0:
        raise PipelineError(_no_rows_message(out, staging, counts))
    infos = [ShardInfo(**s) for s in results["shards"]]
    if sum(s.rows for s in infos) != counts["written"] or len(infos) != config.num_shards:
        raise IntegrityError(f"{len(infos)} shards hold {sum(s.rows for s in infos)} rows; expected "
                             f"{config.num_shards} shards and {counts['written']} rows")
    # Working files of the run, not part of the dataset: the results and the sorted runs merged into the shards.
    storage.delete(storage.join(staging, RESULTS))
    storage.delete(storage.join(staging, RUNS))
    stats = _stats(tally)
    manifest = {
        "config_hash": digest,
        "config": {**config.hashed(), "output": out},
        "inputs": settings["inputs"],
        "label_source": label_source,
        "teacher": {"name": teacher.name, "kind": teacher.kind, "weights_sha256": teacher.weights_sha256,
                    "tokenizer_sha256": teacher.tokenizer_sha256, "max_length": max_length,
                    "device": config.device, "dtype": dtype_for(config.device),
                    "batch_budget": {"tokens": config.batch_tokens, "rows": config.max_batch_rows},
                    "ran": stats.pop("teacher_ran"), "logits": "raw, T=1"},
        "augmentation": {"policy": settings["augmentation"], "operators": sorted(policy.operators)},
        "filter": {"drop_disagreeing": config.filter_disagreement, "min_confidence": config.min_confidence,
                   "active": LabelFilter(config.filter_disagreement, config.min_confidence) != LabelFilter()},
        "counts": counts,
        "stats": stats,
        "task": config.task,
    }
    return _publish(out, staging, infos, manifest, labels, schema_metadata, ", ".join(config.inputs))
