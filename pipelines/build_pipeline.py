"""The Beam graph of `zhkd build`: read → validate → augment → dedup → teacher → filter → shards.

One graph for every runner (the in-process engine, Dask, Dataflow). Three rules make that hold:

- **Work is spread over many small groups, apart from the output shards.** Examples are augmented in
  `num_buckets` groups (hash of the id), deduplicated and tokenised in `num_buckets` groups (hash of
  the normalised text, so duplicates meet), labelled in groups of (id hash % `teacher_groups`, token
  length bin), and written as sorted runs (`num_buckets` in all) that a streaming merge turns into
  shards. What crosses a shuffle is the row's stored columns (plus the teacher's segment ids).
- **Bytes depend on the data alone.** Every group that decides what is computed together is keyed by
  the data, not by the bucket count: teacher batches come from (id hash, length bin) groups sorted by
  (length, id), because a row's logits change in the last bits with the batch it shares; augmentation
  batches have fixed shapes (see the mlm operator); runs merge into the same sorted shard however
  many there are. So any bucket count, worker count and runner give the same shards.
- **Every output is data, and one terminal step consumes it all.** Each DoFn yields `(kind, value)`
  pairs (a row, a dead letter, a tally of counts, a shard's info) from `process` only, and branches
  pick their kind with a plain FlatMap. Beam 2.77's DaskRunner drops what `finish_bundle` emits,
  sends every tagged output of a multi-output ParDo to every consumer, and computes only the last
  transform's result; so there are no tagged outputs, no `finish_bundle` outputs, and every leaf
  (shards, counts, dead letters) feeds `WriteResults`, the last transform, which writes
  `results.json` into staging. The counts reach Beam's metrics too (for a runner's UI).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

from zhkd.augment.example import Variant
from zhkd.pipelines import sink, storage
from zhkd.pipelines.beam_options import quiet_known_warnings
from zhkd.pipelines.build_config import LENGTH_QUANTUM, BuildConfig
from zhkd.pipelines.label_filter import LabelFilter, judge, judge_set
from zhkd.pipelines.sources import ReadUnit, read_unit
from zhkd.pipelines.teacher import TeacherHandler, TeacherTokenizer, plan_batches
from zhkd.rows import BLANK, DeadLetter, Validator
from zhkd.shards import schema_for, shard_of
from zhkd.tasks import get_task

NAMESPACE = "zhkd"
MAIN, DEAD, TALLY, SHARD = "main", "dead", "tally", "shard"
AUGMENT_CHUNK = 64
TOKENIZE_CHUNK = 1024
LENGTH_BIN = 16
RESULTS_FILE = "results.json"

# Worker processes import this module to run its DoFns: quiet Beam's known noise there too.
quiet_known_warnings()


def slot(key: str, n: int, salt: str) -> int:
    """A group index in [0, n) from a key; the salt keeps different groupings independent of each other
    and of the shard (`zhkd.shards.shard_of`)."""
    digest = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def _value(element: tuple, kind: str):
    if element[0] == kind:
        yield element[1]


def _results(element: tuple):
    if element[0] in (TALLY, SHARD):
        yield element


def pick(pcoll, label: str, kind: str):
    """The values of one kind from a stage's (kind, value) output."""
    return pcoll | label >> beam.FlatMap(_value, kind)


def tally(counts: Counter) -> tuple:
    """A stage's counts as a data element (and Beam counters for the runner's UI)."""
    for name, n in counts.items():
        Metrics.counter(NAMESPACE, name).inc(n)
    return TALLY, tuple(sorted(counts.items()))


class ReadRecords(beam.DoFn):
    def process(self, unit: ReadUnit):
        counts: Counter = Counter()
        for record in read_unit(unit):
            if record.error == BLANK:
                counts["blank_lines"] += 1
                continue
            counts["rows_in"] += 1
            yield MAIN, record
        yield tally(counts)


class Validate(beam.DoFn):
    def __init__(self, config: BuildConfig, label_names: list[str], num_buckets: int) -> None:
        self.config, self.label_names, self.num_buckets = config, label_names, num_buckets

    def setup(self) -> None:
        c = self.config
        self.validator = Validator(c.task, c.fields, self.label_names, max_chars=c.max_chars, truncate=c.truncate,
                                   allow_unlabeled=c.allow_unlabeled)

    def process(self, record):
        checked = self.validator.check(record)
        if checked.notes:
            yield tally(Counter(checked.notes))
        if checked.dead is not None:
            yield DEAD, checked.dead
        else:
            yield MAIN, (slot(checked.example.id, self.num_buckets, "bucket"), (checked.example, record))


def _row(variant: Variant) -> dict:
    return {"id": variant.id, "source_id": variant.source_id, "text": variant.text, "text_pair": variant.text_pair,
            "label": variant.label, "tokens": variant.tokens, "tags": variant.tags, "ops": variant.ops,
            "is_original": variant.is_original}


class Augment(beam.DoFn):
    """One bucket of examples: duplicate ids rejected, then variants in fixed chunks of sorted ids.
    The policy is built in `setup`, once per worker; its heavy state loads lazily in that process."""

    def __init__(self, config: BuildConfig, num_buckets: int) -> None:
        self.config, self.num_buckets = config, num_buckets

    def setup(self) -> None:
        from zhkd.augment.policy import make_policy

        c = self.config
        self.policy = make_policy(c.task, num_aug=c.num_aug, ops=c.ops, seed=c.seed, mlm_model=c.mlm_model,
                                  user_dict=c.user_dict, device=c.device)

    def process(self, element):
        _, items = element
        by_id: dict[str, list] = {}
        for item in items:
            if item is not None:  # the bucket's marker
                example, record = item
                by_id.setdefault(example.id, []).append((example, record))
        counts: Counter = Counter()
        examples = []
        for row_id in sorted(by_id):
            first, *others = sorted(by_id[row_id], key=lambda item: (item[1].source, item[1].position))
            examples.append(first[0])
            for _, record in others:
                yield DEAD, DeadLetter("duplicate_id", record.source, record.position, record.raw,
                                       f"id {row_id!r} already used by {first[1].source}:{first[1].position}")
        counts["valid"] += len(examples)
        for start in range(0, len(examples), AUGMENT_CHUNK):
            for variants in self.policy.variants_batch(examples[start:start + AUGMENT_CHUNK]):
                for variant in variants:
                    counts["variants/original" if variant.is_original else "variants/augmented"] += 1
                    row = _row(variant)
                    yield MAIN, (int(dedup_key(row), 16) % self.num_buckets, row)
        yield tally(counts)


def dedup_key(row: dict) -> str:
    """Exact duplicates after normalisation: NFKC, case-folded, whitespace removed."""
    def norm(text: str | None) -> str:
        return "".join(unicodedata.normalize("NFKC", text or "").casefold().split())

    key = norm(row["text"]) + "\x1f" + norm(row["text_pair"])
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def keep_first(rows: list[dict]) -> tuple[list[dict], int]:
    """Of rows with the same normalised text, keep the original if any, else the smallest id;
    returns the kept rows (sorted by id) and how many were dropped."""
    best: dict[str, dict] = {}
    for row in rows:
        key = dedup_key(row)
        if key not in best or (not row["is_original"], row["id"]) < (not best[key]["is_original"], best[key]["id"]):
            best[key] = row
    return sorted(best.values(), key=lambda r: r["id"]), len(rows) - len(best)


class Dedup(beam.DoFn):
    """One bucket of rows grouped by a hash of their normalised text (so duplicates meet): drop exact
    duplicates, tokenise, and key each row by its teacher group (id hash, token-length bin)."""

    def __init__(self, config: BuildConfig, max_length: int, parallel_tokenizer: bool = True) -> None:
        self.config, self.max_length, self.parallel_tokenizer = config, max_length, parallel_tokenizer

    def setup(self) -> None:
        if not self.parallel_tokenizer:  # several worker processes already share the cores
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.tokenizer = TeacherTokenizer(self.config.teacher, self.config.task, self.max_length)

    def process(self, element):
        _, rows = element
        rows, duplicates = keep_first(list(rows))
        counts = Counter(duplicates=duplicates)
        for start in range(0, len(rows), TOKENIZE_CHUNK):
            self.tokenizer.encode(rows[start:start + TOKENIZE_CHUNK])
        for row in rows:
            counts["teacher_truncated"] += row.pop("truncated")
            if row["token_type_ids"] is None:
                del row["token_type_ids"]
            group = (slot(row["id"], self.config.teacher_groups, "teacher"),
                     math.ceil(len(row["input_ids"]) / LENGTH_QUANTUM))
            yield MAIN, (group, row)
        yield tally(counts)


class FormBatches(beam.DoFn):
    """One teacher group: rows sorted by (length, id), cut by the token budget (`plan_batches`)."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config

    def process(self, element):
        _, rows = element
        batches = plan_batches(list(rows), batch_tokens=self.config.batch_tokens, max_rows=self.config.max_batch_rows)
        for batch in batches:
            yield MAIN, batch
        yield tally(Counter(teacher_batches=len(batches)))


@dataclass
class TeacherBatch:
    """A batch's results, kept together so that what follows counts per batch, not per row."""

    results: list
    device: str
    dtype: str
    forward: str


class WholeBatches(TeacherHandler):
    """The teacher handler answering one element per batch (RunInference emits each answer as one
    element), with the device, dtype and forward that actually ran."""

    def run_inference(self, batch, model, inference_args=None):
        return [TeacherBatch(list(super().run_inference(batch, model, inference_args)), str(model.device),
                             model.dtype, model.forward)]


class Progress:
    """A progress line on stderr, at most every `every` seconds, per worker process."""

    def __init__(self, what: str, every: float = 10.0) -> None:
        self.what, self.every = what, every
        self.done, self.started, self.last = 0, time.monotonic(), time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            print(f"zhkd build: {self.what} {self.done:,} rows ({rate:,.0f} rows/s, pid {os.getpid()})",
                  file=sys.stderr, flush=True)


class Judge(beam.DoFn):
    """Per teacher batch: attach the logits, count agreement and statistics, apply the optional
    label-preservation filter, and key each kept row, reduced to its stored columns, by (shard, run)."""

    def __init__(self, config: BuildConfig, label_names: list[str], runs_per_shard: int, show_progress: bool) -> None:
        self.task, self.num_shards, self.runs_per_shard = config.task, config.num_shards, runs_per_shard
        self.label_names = label_names
        self.filter = LabelFilter(config.filter_disagreement, config.min_confidence)
        self.show_progress = show_progress

    def setup(self) -> None:
        self.progress = Progress("teacher labelled") if self.show_progress else None

    def process(self, batch: TeacherBatch):
        label_names, spec = self.label_names, get_task(self.task)
        tag_index = {name: i for i, name in enumerate(label_names)}
        counts = Counter({f"teacher_ran/{batch.device}/{batch.dtype}/{batch.forward}": len(batch.results)})
        for result in batch.results:
            row = dict(result.example)
            row["teacher_logits"] = result.inference
            if spec.per_token:
                gold = None if row["tags"] is None else [tag_index[t] for t in row["tags"]]
                judgement = judge(row["teacher_logits"], gold=gold, token_starts=row["token_starts"])
            elif spec.multilabel:
                judgement = judge_set(row["teacher_logits"], gold=row["label"])
            else:
                judgement = judge(row["teacher_logits"], gold=row["label"])
            kind = "original" if row["is_original"] else "augmented"
            counts["labelled"] += 1
            if judgement.agrees is not None:
                counts[f"agreement/{kind}/labelled"] += 1
                counts[f"agreement/{kind}/agree"] += int(judgement.agrees)
            reason = self.filter.reason_to_drop(judgement, is_original=row["is_original"])
            if reason is not None:
                counts[f"filtered/{reason}"] += 1
                continue
            key = (shard_of(row["id"], self.num_shards), slot(row["id"], self.runs_per_shard, "run"))
            yield MAIN, (key, sink.stored_row(self.task, row, tag_index))
        if self.progress is not None:
            self.progress.add(len(batch.results))
        yield tally(counts)


def count_stats(counts: Counter, task: str, row: dict, label_names: list[str]) -> None:
    """The data card's statistics of a stored row as written: labels (`sink.gold_names`), operators, length."""
    kind = "original" if row["is_original"] else "augmented"
    for name in sink.gold_names(task, row, label_names):
        counts[f"labels/{kind}/{name}"] += 1
    for op in row["ops"]:
        counts[f"ops/{op}"] += 1
    counts[f"length/{kind}/{len(row['text']) // LENGTH_BIN * LENGTH_BIN}"] += 1


def unique_ids(rows: list[dict]) -> tuple[list[dict], int]:
    """One row per id: the input's row where a generated variant took its id (an input that already holds
    variants, e.g. `zhkd augment` output, augmented again with another seed), else the first by content.
    Rows of one id always share a run (the run is keyed by the id); returns the rows and how many went."""
    best: dict[str, dict] = {}
    for row in rows:
        key = (not row["is_original"], row["text"], row.get("text_pair") or "", tuple(row["ops"]))
        if row["id"] not in best or key < best[row["id"]][0]:
            best[row["id"]] = (key, row)
    return [row for _, row in best.values()], len(rows) - len(best)


class WriteRun(beam.DoFn):
    """One run: a small group of one shard's rows, made unique by id, counted, sorted and written to
    staging/runs/."""

    def __init__(self, staging: str, schema: pa.Schema, task: str, label_names: list[str]) -> None:
        self.staging, self.schema, self.task, self.label_names = staging, schema, task, label_names

    def process(self, element):
        (shard, run), rows = element
        rows, collisions = unique_ids(list(rows))
        counts = Counter(id_collisions=collisions)
        for row in rows:
            count_stats(counts, self.task, row, self.label_names)
        yield MAIN, (shard, sink.write_run(self.staging, shard, run, rows, self.schema))
        yield tally(counts)


class MergeShard(beam.DoFn):
    """One shard from its runs (none for an empty shard), merged as a stream; counts what it wrote."""

    def __init__(self, staging: str, num_shards: int, schema: pa.Schema) -> None:
        self.staging, self.num_shards, self.schema = staging, num_shards, schema

    def process(self, element):
        index, runs = element
        counts: Counter = Counter()

        def seen(row: dict) -> None:
            counts["written/original" if row["is_original"] else "written/augmented"] += 1

        info = sink.merge_runs(self.staging, index, self.num_shards, [r for r in runs if r is not None],
                               self.schema, on_row=seen)
        counts["written"] = info.rows
        yield SHARD, asdict(info)
        yield tally(counts)


class WriteDeadLetters(beam.DoFn):
    def __init__(self, staging: str) -> None:
        self.staging = staging

    def process(self, element):
        reason, letters = element
        yield tally(Counter({f"dead_letter/{reason}": sink.write_dead_letters(self.staging, reason, list(letters))}))


class WriteResults(beam.DoFn):
    """The terminal step: every leaf's output (counts, shard infos) in one file for the driver."""

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, element):
        _, outputs = element
        counts: Counter = Counter()
        shards = []
        for kind, value in outputs:
            if kind == TALLY:
                counts.update(dict(value))
            else:
                shards.append(value)
        write_json(self.path, {"counts": dict(counts), "shards": sorted(shards, key=lambda s: s["file"])})
        return ()


def write_json(path: str, value) -> None:
    storage.write_text(path, json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True))


def _terminal(pipeline: beam.Pipeline, stages: list, write: beam.DoFn) -> None:
    """Flatten the results of `stages` into one group and hand it to `write`: applied last, so that a
    runner that computes only the last transform (Beam 2.77's DaskRunner) computes everything."""
    picked = [stage | f"Results{i}" >> beam.FlatMap(_results) for i, stage in enumerate(stages)]
    _ = (picked
         | "AllResults" >> beam.Flatten()
         | "OneGroup" >> beam.Map(lambda e: (0, e))
         | "GroupResults" >> beam.GroupByKey()
         | "WriteResults" >> beam.ParDo(write))


def runs_per_shard(num_buckets: int, num_shards: int) -> int:
    """Sorted runs per shard: about `num_buckets` runs in all, so a run is about as small as a bucket."""
    return max(1, math.ceil(num_buckets / num_shards))


def build_pipeline(pipeline: beam.Pipeline, *, config: BuildConfig, units: list[ReadUnit], staging: str,
                   label_names: list[str], teacher_max_length: int, pad_token_id: int,
                   metadata: dict[str, str], num_buckets: int, teacher_copies: int | None = None,
                   parallel_tokenizer: bool = True, show_progress: bool = False) -> None:
    """Add the build's transforms to `pipeline`; results land in `staging` (`results.json` last).
    `parallel_tokenizer` off when several local worker processes already share the cores."""
    schema = schema_for(config.task, label_names=label_names, metadata=metadata)
    read = (pipeline
            | "Units" >> beam.Create(units)
            | "SpreadUnits" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadRecords()))
    validated = pick(read, "Records", MAIN) | "Validate" >> beam.ParDo(Validate(config, label_names, num_buckets))
    # One marker per bucket: every bucket is a group, and on Dask the grouping gets a partition per
    # bucket (its GroupByKey keeps the input's partition count; one input file arrives as one partition).
    markers = pipeline | "Buckets" >> beam.Create([(b, None) for b in range(num_buckets)])
    augmented = ((pick(validated, "Examples", MAIN), markers)
                 | "WithBuckets" >> beam.Flatten()
                 | "GroupExamples" >> beam.GroupByKey()
                 | "Augment" >> beam.ParDo(Augment(config, num_buckets)))
    deduped = (pick(augmented, "Variants", MAIN)
               | "GroupByContent" >> beam.GroupByKey()
               | "Dedup" >> beam.ParDo(Dedup(config, teacher_max_length, parallel_tokenizer)))
    batches = (pick(deduped, "Unique", MAIN)
               | "GroupForTeacher" >> beam.GroupByKey()
               | "FormBatches" >> beam.ParDo(FormBatches(config)))
    handler = WholeBatches(config.teacher, config.task, pad_token_id=pad_token_id, device=config.device,
                           copies=teacher_copies, threads=config.teacher_threads,
                           fingerprint=metadata.get("teacher_weights_sha256", "")).with_no_batching()
    judged = (pick(batches, "Batches", MAIN)
              | "Teacher" >> RunInference(handler)
              | "Judge" >> beam.ParDo(Judge(config, label_names, runs_per_shard(num_buckets, config.num_shards),
                                            show_progress)))
    runs = (pick(judged, "Kept", MAIN)
            | "GroupRuns" >> beam.GroupByKey()
            | "WriteRuns" >> beam.ParDo(WriteRun(staging, schema, config.task, label_names)))
    every_shard = pipeline | "EveryShard" >> beam.Create([(i, None) for i in range(config.num_shards)])
    shards = ((pick(runs, "RunNames", MAIN), every_shard)
              | "WithEmptyShards" >> beam.Flatten()
              | "GroupShards" >> beam.GroupByKey()
              | "MergeShards" >> beam.ParDo(MergeShard(staging, config.num_shards, schema)))
    dead = ((pick(validated, "Invalid", DEAD), pick(augmented, "DuplicateIds", DEAD))
            | "AllDeadLetters" >> beam.Flatten()
            | "ByReason" >> beam.Map(lambda d: (d.reason, d))
            | "GroupReasons" >> beam.GroupByKey()
            | "WriteDeadLetters" >> beam.ParDo(WriteDeadLetters(staging)))
    _terminal(pipeline, [read, validated, augmented, deduped, batches, judged, runs, shards, dead],
              WriteResults(storage.join(staging, RESULTS_FILE)))
