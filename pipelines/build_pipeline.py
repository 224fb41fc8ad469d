"""The Beam graph of `zhkd build`: read → validate → augment → dedup → teacher → filter → shards.

One graph for every runner (the in-process engine, Dask, Dataflow). Four rules make that hold:

- **Work is spread over many small groups, apart from the output shards.** Examples are augmented and
  tokenised in `num_buckets` groups (hash of the id); deduplicated and labelled in teacher groups of
  (normalised-text hash % `teacher_groups`, normalised length bin), so duplicates meet; and written as
  sorted runs (`num_buckets` in all) that a streaming merge turns into shards.
- **A shuffle carries what the next stage needs, compactly** (`zhkd.pipelines.wire`). Three groupings
  carry rows: examples to their bucket; each variant's teacher inputs (token ids as bytes, gold, keys;
  no text) to its teacher group; its stored fields straight to its run, where the teacher's columns
  (ids and float32 logits as bytes) join them by a digest of the row. So the text crosses once after
  augmentation, and one grouping serves deduplication and batching. Rows travel in chunks per
  destination, not one element each.
- **Bytes depend on the data alone.** Every group that decides what is computed together is keyed by
  the data, not by the bucket count: teacher batches come from teacher groups sorted by (length, id),
  because a row's logits change in the last bits with the batch it shares; augmentation batches have
  fixed shapes (see the mlm operator); runs merge into the same sorted shard however many there are.
  So any bucket count, worker count and runner give the same shards.
- **Every output is data, and it all flows into the last step.** Each DoFn yields `(kind, value)`
  pairs (a row, a dead letter, a tally of counts) from `process` only, and branches pick their kind
  with a plain FlatMap. Beam 2.77's DaskRunner drops what `finish_bundle` emits, sends every tagged
  output of a multi-output ParDo to every consumer, and computes only the last transform's result; so
  there are no tagged outputs, no `finish_bundle` outputs, and no leaf beside the last transform:
  dead letters and every stage's tallies ride the write step's grouping (`to_write`: a group per
  reason, one for the counts), and the write step sends the counts on to the shard step, the last
  transform, which writes each shard with its record and the counts into staging's `results/` (the
  driver reads them with `read_results`). Each Flatten adds its inputs' Dask partitions to the next
  grouping, whose cost on Dask grows with their square; so each stage feeds the write step through
  one FlatMap, and no grouping of every stage's outputs follows the shards (its shuffle had more
  tasks than the rest of the build; `bench/dask_tasks.py` shows a run's tasks). The counts reach
  Beam's metrics too (for a runner's UI).
"""

from __future__ import annotations

import functools
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

from zhkd.pipelines import sink, storage, wire
from zhkd.pipelines.beam_options import quiet_known_warnings
from zhkd.pipelines.build_config import LENGTH_QUANTUM, BuildConfig
from zhkd.pipelines.label_filter import LabelFilter, judge, judge_set
from zhkd.pipelines.sources import ReadUnit, read_unit
from zhkd.pipelines.teacher import TeacherHandler, TeacherTokenizer, plan_batches
from zhkd.rows import BLANK, DeadLetter, Validator
from zhkd.shards import schema_for, shard_of
from zhkd.tasks import get_task

NAMESPACE = "zhkd"
MAIN, DEAD, TALLY = "main", "dead", "tally"
ROWS, LABELS = "rows", "labels"  # a row's stored fields and its teacher columns, on their way to its run
AUGMENT_CHUNK = 64
LENGTH_BIN = 16
# Staging's results/: the counts of every stage (COUNTS_FILE) and one record per shard, for the driver.
RESULTS, COUNTS_FILE = "results", "counts.json"
COUNTS = "counts"  # the group of the write step, and of the shard step, that gathers the tallies

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


def to_write(element: tuple, rows_kind: str | None):
    """A stage's output routed to the write step's groups: its row parts (`rows_kind`) to their run, a
    dead letter to its reason's group, a tally to the counts' group; anything else goes elsewhere."""
    kind, value = element
    if kind == rows_kind:
        yield value
    elif kind == DEAD:
        yield (DEAD, value.reason), value
    elif kind == TALLY:
        yield (COUNTS,), value


def summed(tallies) -> Counter:
    """Counts summed over tallies (each a tally's items or a mapping of them)."""
    total: Counter = Counter()
    for items in tallies:
        total.update(dict(items))
    return total


def pick(pcoll, label: str, kind: str):
    """The values of one kind from a stage's (kind, value) output."""
    return pcoll | label >> beam.FlatMap(_value, kind)


def tally(counts: Counter) -> tuple:
    """A stage's counts as a data element (and Beam counters for the runner's UI)."""
    for name, n in counts.items():
        Metrics.counter(NAMESPACE, name).inc(n)
    return TALLY, tuple(sorted(counts.items()))


class ReadExamples(beam.DoFn):
    """One input unit read and validated. Its examples leave for their buckets in chunks (`wire.chunked`)
    and its counts in one tally: an element per record cost the bucket grouping its per-element work
    (Dask hashes each element's key, and pickles it when it changes worker) once per row, and on two
    local Dask workers the other worker sat idle through the first tenth of a 100k-row build while the
    reader's examples crossed (`bench/measurements/dask_tasks_100k_b5ba6ea.json`)."""

    def __init__(self, config: BuildConfig, label_names: list[str], num_buckets: int) -> None:
        self.config, self.label_names, self.num_buckets = config, label_names, num_buckets

    def setup(self) -> None:
        c = self.config
        self.validator = Validator(c.task, c.fields, self.label_names, max_chars=c.max_chars, truncate=c.truncate,
                                   allow_unlabeled=c.allow_unlabeled)

    def process(self, unit: ReadUnit):
        counts: Counter = Counter()
        for key, chunk in wire.chunked(self._checked(unit, counts)):
            if key == DEAD:
                yield from ((DEAD, letter) for letter in chunk)
            else:
                yield MAIN, (key, wire.pack_chunk(chunk))
        yield tally(counts)

    def _checked(self, unit: ReadUnit, counts: Counter):
        """(bucket, (example, source, position, raw)) per valid record (the raw row is kept for a duplicate
        id's dead letter), (DEAD, letter) per invalid one."""
        for record in read_unit(unit):
            if record.error == BLANK:
                counts["blank_lines"] += 1
                continue
            counts["rows_in"] += 1
            checked = self.validator.check(record)
            counts.update(checked.notes)
            if checked.dead is not None:
                yield DEAD, checked.dead
            else:
                example = checked.example
                yield slot(example.id, self.num_buckets, "bucket"), (example, record.source, record.position,
                                                                     record.raw)


def content_key(text: str | None, text_pair: str | None) -> tuple[bytes, int]:
    """Exact duplicates after normalisation (NFKC, case-folded, whitespace removed): a digest of the
    normalised text, and its length (duplicates share both)."""
    def norm(value: str | None) -> str:
        return "".join(unicodedata.normalize("NFKC", value or "").casefold().split())

    key = norm(text) + "\x1f" + norm(text_pair)
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest(), len(key) - 1


@functools.lru_cache(maxsize=2)
def augment_state(config: BuildConfig, max_length: int, config_hash: str):
    """The augmentation policy and the teacher's tokenizer, built once per worker process and build: Beam's
    DaskRunner sets a DoFn up for every partition (bundle), and a policy rebuilt each time would also start
    its memo tables cold. Both are pure functions of their inputs, so sharing them changes no byte; the
    build's config hash (which covers the teacher's and the resources' digests) keeps a file replaced
    between two builds in one process from being served stale."""
    from zhkd.augment.policy import make_policy

    c = config
    policy = make_policy(c.task, num_aug=c.num_aug, ops=c.ops, seed=c.seed, mlm_model=c.mlm_model,
                         user_dict=c.user_dict, device=c.device)
    return policy, TeacherTokenizer(c.teacher, c.task, max_length)


class Augment(beam.DoFn):
    """One bucket of examples: duplicate ids rejected, then variants in fixed chunks of sorted ids,
    tokenised for the teacher. Each variant leaves in two parts (`zhkd.pipelines.wire`): its teacher
    inputs to its teacher group, its stored fields straight to its run. The policy and the tokenizer
    come from `augment_state`, once per worker process; the policy's heavy state loads lazily there.
    `parallel_tokenizer` off when several local worker processes already share the cores."""

    def __init__(self, config: BuildConfig, label_names: list[str], max_length: int, runs_per_shard: int,
                 config_hash: str, parallel_tokenizer: bool = True) -> None:
        self.config, self.label_names, self.max_length = config, label_names, max_length
        self.config_hash = config_hash
        self.runs_per_shard, self.parallel_tokenizer = runs_per_shard, parallel_tokenizer

    def setup(self) -> None:
        if not self.parallel_tokenizer:
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.policy, self.tokenizer = augment_state(self.config, self.max_length, self.config_hash)
        self.tag_index = {name: i for i, name in enumerate(self.label_names)}

    def process(self, element):
        _, chunks = element
        by_id: dict[str, list] = {}
        for chunk in chunks:
            for item in wire.unpack_chunk(chunk) if chunk is not None else ():  # None: the bucket's marker
                by_id.setdefault(item[0].id, []).append(item)
        counts: Counter = Counter()
        examples = []
        for row_id in sorted(by_id):
            first, *others = sorted(by_id[row_id], key=lambda item: (item[1], item[2]))  # (source, position)
            examples.append(first[0])
            for _, source, position, raw in others:
                yield DEAD, DeadLetter("duplicate_id", source, position, raw,
                                       f"id {row_id!r} already used by {first[1]}:{first[2]}")
        counts["valid"] += len(examples)
        for (kind, key), chunk in wire.chunked(self._parts(examples, counts)):
            if kind == MAIN:
                yield MAIN, (key, wire.pack_chunk(chunk))
            else:  # tagged: in its run, these meet the teacher's columns
                yield ROWS, (key, (ROWS, wire.pack_chunk(chunk)))
        yield tally(counts)

    def _parts(self, examples: list, counts: Counter):
        """((kind, group), part) for every variant: (MAIN, teacher group) its TeacherRow, (ROWS, run) its fields."""
        spec = get_task(self.config.task)
        for start in range(0, len(examples), AUGMENT_CHUNK):
            variants = [v for found in self.policy.variants_batch(examples[start:start + AUGMENT_CHUNK])
                        for v in found]
            for variant, encoding in zip(variants, self.tokenizer.encode(variants), strict=True):
                counts["variants/original" if variant.is_original else "variants/augmented"] += 1
                dedup, length = content_key(variant.text, variant.text_pair)
                if spec.per_token:
                    gold = None if variant.tags is None else wire.pack_ints([self.tag_index[t] for t in variant.tags])
                else:
                    gold = variant.label
                row = wire.TeacherRow.make(variant, encoding, dedup, gold)
                group = (slot(dedup.hex(), self.config.teacher_groups, "teacher"), math.ceil(length / LENGTH_QUANTUM))
                yield (MAIN, group), row
                yield (ROWS, run_of(variant.id, self.config.num_shards, self.runs_per_shard)), variant


def run_of(row_id: str, num_shards: int, runs_per_shard: int) -> tuple[int, int]:
    """A row's (shard, sorted run): both parts of a row meet there."""
    return shard_of(row_id, num_shards), slot(row_id, runs_per_shard, "run")


def keep_first(rows: list[wire.TeacherRow]) -> tuple[list[wire.TeacherRow], int]:
    """Of rows with the same normalised text, keep the original if any, else the smallest id (then the
    smallest row key: the choice never depends on the order rows arrive in); returns the kept rows and
    how many were dropped."""
    best: dict[bytes, wire.TeacherRow] = {}
    for row in rows:
        held = best.get(row.dedup_key)
        if held is None or (not row.is_original, row.id, row.row_key) < (not held.is_original, held.id, held.row_key):
            best[row.dedup_key] = row
    return list(best.values()), len(rows) - len(best)


class RowBatch(list):
    """A teacher batch (a list of `wire.TeacherRow`) that carries its group's counts to the judge, so that
    FormBatches need not feed the write step itself (each stage feeding it adds its Dask partitions)."""

    def __init__(self, rows, counts: tuple = ()) -> None:
        super().__init__(rows)
        self.counts = counts


class FormBatches(beam.DoFn):
    """One teacher group (normalised-text hash % teacher groups, length bin), so duplicates meet: drop
    exact duplicates, then rows sorted by (length, id), cut by the token budget (`plan_batches`); the
    group's counts ride its first batch (a group of rows always makes at least one)."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config

    def process(self, element):
        _, chunks = element
        rows, duplicates = keep_first([row for chunk in chunks for row in wire.unpack_chunk(chunk)])
        batches = plan_batches(rows, batch_tokens=self.config.batch_tokens, max_rows=self.config.max_batch_rows)
        counts = Counter(duplicates=duplicates, teacher_batches=len(batches),
                         teacher_truncated=sum(row.truncated for row in rows))
        for i, batch in enumerate(batches):
            yield MAIN, RowBatch(batch, tuple(sorted(counts.items())) if i == 0 else ())


@dataclass
class TeacherBatch:
    """A batch's results, kept together so that what follows counts per batch, not per row."""

    results: list
    device: str
    dtype: str
    forward: str
    counts: tuple = ()  # its group's counts from FormBatches (`RowBatch`)


class WholeBatches(TeacherHandler):
    """The teacher handler answering one element per batch (RunInference emits each answer as one
    element), with the device, dtype and forward that actually ran."""

    def run_inference(self, batch, model, inference_args=None):
        return [TeacherBatch(list(super().run_inference(batch, model, inference_args)), str(model.device),
                             model.dtype, model.forward, getattr(batch, "counts", ()))]


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
    """Per teacher batch: count agreement and statistics, apply the optional label-preservation filter,
    and send each kept row's teacher columns (`wire.Labelled`) to its run, where its stored fields wait."""

    def __init__(self, config: BuildConfig, runs_per_shard: int, show_progress: bool) -> None:
        self.task, self.num_shards, self.runs_per_shard = config.task, config.num_shards, runs_per_shard
        self.filter = LabelFilter(config.filter_disagreement, config.min_confidence)
        self.show_progress = show_progress

    def setup(self) -> None:
        self.progress = Progress("teacher labelled") if self.show_progress else None

    def process(self, batch: TeacherBatch):
        counts = Counter({f"teacher_ran/{batch.device}/{batch.dtype}/{batch.forward}": len(batch.results)})
        counts.update(dict(batch.counts))
        for run, chunk in wire.chunked(self._kept(batch, counts)):
            yield MAIN, (run, (LABELS, wire.pack_chunk(chunk)))
        if self.progress is not None:
            self.progress.add(len(batch.results))
        yield tally(counts)

    def _kept(self, batch: TeacherBatch, counts: Counter):
        spec = get_task(self.task)
        for result in batch.results:
            row, logits = result.example, result.inference
            if spec.per_token:
                gold = None if row.gold is None else wire.unpack_ints(row.gold)
                judgement = judge(logits, gold=gold, token_starts=wire.unpack_ints(row.token_starts))
            elif spec.multilabel:
                judgement = judge_set(logits, gold=row.gold)
            else:
                judgement = judge(logits, gold=row.gold)
            kind = "original" if row.is_original else "augmented"
            counts["labelled"] += 1
            if judgement.agrees is not None:
                counts[f"agreement/{kind}/labelled"] += 1
                counts[f"agreement/{kind}/agree"] += int(judgement.agrees)
            reason = self.filter.reason_to_drop(judgement, is_original=row.is_original)
            if reason is not None:
                counts[f"filtered/{reason}"] += 1
                continue
            run = run_of(row.id, self.num_shards, self.runs_per_shard)
            yield run, wire.Labelled(row.row_key, row.input_ids, row.token_starts, wire.pack_floats(logits))


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


class Write(beam.DoFn):
    """One group of the write step (`to_write`): a run's rows, a reason's dead letters, or the counts of
    the stages before; sends the shard step (keyed by shard) each run's name and (under COUNTS) all counts.
    The counts' group, present in every build (each input unit is counted), also names every shard, so
    that an empty shard is written too (a separate Create of markers would add Dask partitions)."""

    def __init__(self, staging: str, schema: pa.Schema, task: str, label_names: list[str],
                 num_shards: int) -> None:
        self.staging, self.schema, self.task, self.label_names = staging, schema, task, label_names
        self.num_shards = num_shards

    def process(self, element):
        key, values = element
        if key == (COUNTS,):
            yield MAIN, (COUNTS, (TALLY, tuple(sorted(summed(values).items()))))  # already in the metrics
            for shard in range(self.num_shards):
                yield MAIN, (shard, None)
        elif key[0] == DEAD:
            written = sink.write_dead_letters(self.staging, key[1], list(values))
            yield MAIN, (COUNTS, tally(Counter({f"dead_letter/{key[1]}": written})))
        else:
            yield from self._run(key, values)

    def _run(self, key: tuple[int, int], chunks):
        """One run: a small group of one shard's rows, joined with their teacher columns, made unique by id,
        counted, sorted and written to staging/runs/. A row's fields without teacher columns are those of
        a duplicate or a filtered row (counted where they were dropped) and are not written."""
        shard, run = key
        labelled: dict[bytes, wire.Labelled] = {}
        variants = []
        for kind, chunk in chunks:
            if kind == LABELS:
                labelled.update((part.row_key, part) for part in wire.unpack_chunk(chunk))
            else:
                variants.extend(wire.unpack_chunk(chunk))
        tag_index = {name: i for i, name in enumerate(self.label_names)}
        rows = []
        for variant in variants:
            part = labelled.pop(wire.row_key(variant), None)  # popped: identical rows are joined once
            if part is not None:
                rows.append(sink.stored_row(self.task, variant, part, tag_index))
        rows, collisions = unique_ids(rows)
        counts = Counter(id_collisions=collisions)
        for row in rows:
            count_stats(counts, self.task, row, self.label_names)
        yield MAIN, (shard, sink.write_run(self.staging, shard, run, rows, self.schema))
        yield MAIN, (COUNTS, tally(counts))


class MergeShard(beam.DoFn):
    """The last step. One shard from its runs (none for an empty shard), merged as a stream, with a record
    of what it wrote in staging's results/; or, for COUNTS, every stage's counts summed into its file."""

    def __init__(self, staging: str, num_shards: int, schema: pa.Schema) -> None:
        self.staging, self.num_shards, self.schema = staging, num_shards, schema

    def process(self, element):
        index, values = element
        if index == COUNTS:
            write_json(storage.join(self.staging, RESULTS, COUNTS_FILE), dict(summed(items for _, items in values)))
            return
        runs = values
        counts: Counter = Counter()

        def seen(row: dict) -> None:
            counts["written/original" if row["is_original"] else "written/augmented"] += 1

        info = sink.merge_runs(self.staging, index, self.num_shards, [r for r in runs if r is not None],
                               self.schema, on_row=seen)
        counts["written"] = info.rows
        _, items = tally(counts)
        write_json(storage.join(self.staging, RESULTS, f"shard-{index:05d}.json"),
                   {"info": asdict(info), "counts": dict(items)})


def write_json(path: str, value) -> None:
    storage.write_text(path, json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True))


def read_results(staging: str) -> dict:
    """What the last step left in staging's results/: {"counts": every stage's counts, "shards": the shard
    records sorted by file}; a shard record missing shows as fewer shards (the driver checks the count)."""
    folder = storage.join(staging, RESULTS)
    records = [json.loads(storage.read_text(storage.join(folder, name)))
               for name in storage.list_names(folder) if name.startswith("shard-")]
    counts = summed([json.loads(storage.read_text(storage.join(folder, COUNTS_FILE)))]
                    + [record["counts"] for record in records])
    return {"counts": dict(counts), "shards": sorted((r["info"] for r in records), key=lambda s: s["file"])}


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
            | "Read" >> beam.ParDo(ReadExamples(config, label_names, num_buckets)))
    # One marker per bucket: every bucket is a group, and on Dask the grouping gets a partition per
    # bucket (its GroupByKey keeps the input's partition count; one input file arrives as one partition).
    markers = pipeline | "Buckets" >> beam.Create([(b, None) for b in range(num_buckets)])
    runs = runs_per_shard(num_buckets, config.num_shards)
    augmented = ((pick(read, "Examples", MAIN), markers)
                 | "WithBuckets" >> beam.Flatten()
                 | "GroupExamples" >> beam.GroupByKey()
                 | "Augment" >> beam.ParDo(Augment(config, label_names, teacher_max_length, runs,
                                                   metadata.get("config_hash", ""), parallel_tokenizer)))
    batches = (pick(augmented, "ForTeacher", MAIN)
               | "GroupForTeacher" >> beam.GroupByKey()
               | "FormBatches" >> beam.ParDo(FormBatches(config)))
    handler = WholeBatches(config.teacher, config.task, pad_token_id=pad_token_id, device=config.device,
                           copies=teacher_copies, threads=config.teacher_threads,
                           fingerprint=metadata.get("teacher_weights_sha256", "")).with_no_batching()
    judged = (pick(batches, "Batches", MAIN)
              | "Teacher" >> RunInference(handler)
              | "Judge" >> beam.ParDo(Judge(config, runs, show_progress)))
    # One FlatMap per stage into the write step: each adds its stage's partitions to the grouping.
    stages = {"Read": (read, None), "Augmented": (augmented, ROWS),
              "Judged": (judged, MAIN)}  # FormBatches' counts reach the judge with its batches
    written = ([stage | f"{name}ToWrite" >> beam.FlatMap(to_write, rows_kind)
                for name, (stage, rows_kind) in stages.items()]
               | "ToWrite" >> beam.Flatten()
               | "GroupWrites" >> beam.GroupByKey()
               | "Write" >> beam.ParDo(Write(staging, schema, config.task, label_names, config.num_shards)))
    _ = (pick(written, "ForShards", MAIN)
         | "GroupShards" >> beam.GroupByKey()
         | "MergeShards" >> beam.ParDo(MergeShard(staging, config.num_shards, schema)))  # the last transform
