"""The Beam graph of `zhkd build`: read → validate → augment → dedup + teacher → filter → shards.

Every grouping that decides which rows are processed together is keyed by the data (hash of the id,
or of the normalised text) and sorted inside the group, so the output bytes never depend on bundle
boundaries, worker count or runner. Every stage counts what it does (`Tallying`): the counts reach
Beam's metrics for the runner's UI and, as data, `counts.json` in staging, which the manifest uses,
so they reconcile exactly whatever the runner's metric semantics.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import asdict

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.pvalue import AsSingleton, TaggedOutput
from apache_beam.transforms.window import GlobalWindows

from zhkd.augment.example import Variant
from zhkd.pipelines import sink, storage
from zhkd.pipelines.beam_options import quiet_known_warnings
from zhkd.pipelines.build_config import BuildConfig
from zhkd.pipelines.label_filter import LabelFilter, judge, judge_set
from zhkd.pipelines.sources import ReadUnit, read_unit
from zhkd.pipelines.teacher import TeacherHandler, TeacherTokenizer, plan_batches
from zhkd.rows import BLANK, DeadLetter, Validator
from zhkd.shards import schema_for, shard_of
from zhkd.tasks import get_task

NAMESPACE = "zhkd"
TALLY, DEAD = "tally", "dead"
AUGMENT_CHUNK = 64
TOKENIZE_CHUNK = 1024
LENGTH_BIN = 16
COUNTS_FILE, SHARDS_FILE = "counts.json", "shards.json"

# Worker processes import this module to run its DoFns: quiet Beam's known noise there too.
quiet_known_warnings()


class Tallying(beam.DoFn):
    """A DoFn that counts events per bundle and emits them as (name, n) on the `tally` output."""

    def start_bundle(self) -> None:
        self._tally: Counter = Counter()

    def count(self, name: str, n: int = 1) -> None:
        self._tally[name] += n

    def finish_bundle(self):
        for name, n in sorted(self._tally.items()):
            Metrics.counter(NAMESPACE, name).inc(n)
            yield TaggedOutput(TALLY, GlobalWindows.windowed_value((name, n)))


class ReadRecords(Tallying):
    def process(self, unit: ReadUnit):
        for record in read_unit(unit):
            if record.error == BLANK:
                self.count("blank_lines")
                continue
            self.count("rows_in")
            yield record


class Validate(Tallying):
    def __init__(self, config: BuildConfig) -> None:
        self.config = config
        self._validator: Validator | None = None

    def process(self, record, label_names: list[str]):
        if self._validator is None or self._validator.label_names != label_names:
            c = self.config
            self._validator = Validator(c.task, c.fields, label_names, max_chars=c.max_chars, truncate=c.truncate,
                                        allow_unlabeled=c.allow_unlabeled)
        checked = self._validator.check(record)
        for note in checked.notes:
            self.count(note)
        if checked.dead is not None:
            yield TaggedOutput(DEAD, checked.dead)
        else:
            yield shard_of(checked.example.id, self.config.num_shards), (checked.example, record)


def _row(variant: Variant) -> dict:
    return {"id": variant.id, "source_id": variant.source_id, "text": variant.text, "text_pair": variant.text_pair,
            "label": variant.label, "tokens": variant.tokens, "tags": variant.tags, "ops": variant.ops,
            "is_original": variant.is_original}


class Augment(Tallying):
    """One group of examples: duplicate ids rejected, then variants in fixed chunks of sorted ids.
    The policy is built in `setup`, once per worker; its heavy state loads lazily in that process."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config

    def setup(self) -> None:
        from zhkd.augment.policy import make_policy

        c = self.config
        self.policy = make_policy(c.task, num_aug=c.num_aug, ops=c.ops, seed=c.seed, mlm_model=c.mlm_model,
                                  user_dict=c.user_dict)

    def process(self, element):
        _, items = element
        by_id: dict[str, list] = {}
        for example, record in items:
            by_id.setdefault(example.id, []).append((example, record))
        examples = []
        for row_id in sorted(by_id):
            first, *others = sorted(by_id[row_id], key=lambda item: (item[1].source, item[1].position))
            examples.append(first[0])
            for _, record in others:
                yield TaggedOutput(DEAD, DeadLetter("duplicate_id", record.source, record.position, record.raw,
                                                    f"id {row_id!r} already used by {first[1].source}:"
                                                    f"{first[1].position}"))
        self.count("valid", len(examples))
        for start in range(0, len(examples), AUGMENT_CHUNK):
            for variants in self.policy.variants_batch(examples[start:start + AUGMENT_CHUNK]):
                for variant in variants:
                    self.count("variants/original" if variant.is_original else "variants/augmented")
                    yield _row(variant)


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


class FormBatches(Tallying):
    """One group of rows (grouped by a hash of their normalised text, so duplicates meet): drop exact
    duplicates, tokenise, and cut length-sorted batches of (id, row) for RunInference."""

    def __init__(self, config: BuildConfig, max_length: int, parallel_tokenizer: bool = True) -> None:
        self.config, self.max_length, self.parallel_tokenizer = config, max_length, parallel_tokenizer

    def setup(self) -> None:
        if not self.parallel_tokenizer:  # several worker processes already share the cores
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.tokenizer = TeacherTokenizer(self.config.teacher, self.config.task, self.max_length)

    def process(self, element):
        _, rows = element
        rows, duplicates = keep_first(list(rows))
        self.count("duplicates", duplicates)
        for start in range(0, len(rows), TOKENIZE_CHUNK):
            self.tokenizer.encode(rows[start:start + TOKENIZE_CHUNK])
        self.count("teacher_truncated", sum(r["truncated"] for r in rows))
        for batch in plan_batches(rows, batch_tokens=self.config.batch_tokens, max_rows=self.config.max_batch_rows):
            self.count("teacher_batches")
            yield [(r["id"], r) for r in batch]


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


class Judge(Tallying):
    """Attach the logits, count teacher agreement, apply the optional label-preservation filter."""

    def __init__(self, config: BuildConfig, show_progress: bool) -> None:
        self.task = config.task
        self.filter = LabelFilter(config.filter_disagreement, config.min_confidence)
        self.show_progress = show_progress

    def setup(self) -> None:
        self.progress = Progress("teacher labelled") if self.show_progress else None
        self.tag_index: dict[str, int] = {}

    def process(self, element, label_names: list[str]):
        _, result = element
        row = dict(result.example)
        row["teacher_logits"] = result.inference
        if self.progress is not None:
            self.progress.add(1)
        spec = get_task(self.task)
        if spec.per_token:
            if len(self.tag_index) != len(label_names):
                self.tag_index = {name: i for i, name in enumerate(label_names)}
            gold = None if row["tags"] is None else [self.tag_index[t] for t in row["tags"]]
            judgement = judge(row["teacher_logits"], gold=gold, token_starts=row["token_starts"])
        elif spec.multilabel:
            judgement = judge_set(row["teacher_logits"], gold=row["label"])
        else:
            judgement = judge(row["teacher_logits"], gold=row["label"])
        kind = "original" if row["is_original"] else "augmented"
        self.count("labelled")
        if judgement.agrees is not None:
            self.count(f"agreement/{kind}/labelled")
            self.count(f"agreement/{kind}/agree", int(judgement.agrees))
        reason = self.filter.reason_to_drop(judgement, is_original=row["is_original"])
        if reason is not None:
            self.count(f"filtered/{reason}")
            return
        yield row


class WriteShard(Tallying):
    def __init__(self, staging: str, config: BuildConfig, metadata: dict[str, str]) -> None:
        self.staging, self.task, self.num_shards, self.metadata = staging, config.task, config.num_shards, metadata

    def process(self, element, label_names: list[str]):
        index, rows = element
        rows = [r for r in rows if r is not None]
        schema = schema_for(self.task, label_names=label_names, metadata=self.metadata)
        tag_index = {name: i for i, name in enumerate(label_names)}
        info = sink.write_shard_to(self.staging, index, self.num_shards,
                                   [sink.stored_row(self.task, r, tag_index) for r in rows], schema)
        self.count("written", len(rows))
        for row in rows:
            kind = "original" if row["is_original"] else "augmented"
            self.count(f"written/{kind}")
            for name in sink.gold_names(self.task, row, label_names):
                self.count(f"labels/{kind}/{name}")
            for op in row["ops"]:
                self.count(f"ops/{op}")
            self.count(f"length/{kind}/{len(row['text']) // LENGTH_BIN * LENGTH_BIN}")
        yield asdict(info)


class WriteDeadLetters(Tallying):
    def __init__(self, staging: str) -> None:
        self.staging = staging

    def process(self, element):
        reason, letters = element
        self.count(f"dead_letter/{reason}", sink.write_dead_letters(self.staging, reason, list(letters)))


def _write_json(path: str):
    def write(value) -> None:
        storage.write_text(path, json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True))
    return write


def build_pipeline(pipeline: beam.Pipeline, *, config: BuildConfig, units: list[ReadUnit], staging: str,
                   label_names: list[str], teacher_max_length: int, pad_token_id: int,
                   metadata: dict[str, str], device: str = "auto", teacher_copies: int | None = None,
                   parallel_tokenizer: bool = True, show_progress: bool = False) -> None:
    """Add the build's transforms to `pipeline`; results land in `staging`. `parallel_tokenizer` off
    when several local worker processes already share the cores."""
    tallies = []
    read = (pipeline
            | "Units" >> beam.Create(units)
            | "SpreadUnits" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadRecords()).with_outputs(TALLY, main="records"))
    tallies.append(read[TALLY])
    labels = pipeline | "KnownLabels" >> beam.Create([label_names])  # known before the run (build.infer_labels)
    validated = read.records | "Validate" >> beam.ParDo(Validate(config), AsSingleton(labels)).with_outputs(
        TALLY, DEAD, main="examples")
    tallies.append(validated[TALLY])
    augmented = (validated.examples
                 | "GroupExamples" >> beam.GroupByKey()
                 | "Augment" >> beam.ParDo(Augment(config)).with_outputs(TALLY, DEAD, main="rows"))
    tallies.append(augmented[TALLY])
    handler = KeyedModelHandler(TeacherHandler(config.teacher, config.task, pad_token_id=pad_token_id,
                                               device=device, copies=teacher_copies,
                                               threads=config.teacher_threads)).with_no_batching()
    # Grouped by content, not id: exact duplicates meet in one group and are dropped there (no extra shuffle).
    batches = (augmented.rows
               | "KeyByContent" >> beam.Map(lambda r: (shard_of(dedup_key(r), config.num_shards), r))
               | "GroupForTeacher" >> beam.GroupByKey()
               | "FormBatches" >> beam.ParDo(FormBatches(config, teacher_max_length, parallel_tokenizer))
               .with_outputs(TALLY, main="b"))
    tallies.append(batches[TALLY])
    judged = (batches.b
              | "Teacher" >> RunInference(handler)
              | "Judge" >> beam.ParDo(Judge(config, show_progress), AsSingleton(labels)).with_outputs(
                  TALLY, main="rows"))
    tallies.append(judged[TALLY])
    every_shard = pipeline | "EveryShard" >> beam.Create([(i, None) for i in range(config.num_shards)])
    shards = ((judged.rows | "ShardKey" >> beam.Map(lambda r: (shard_of(r["id"], config.num_shards), r)),
               every_shard)
              | "WithEmptyShards" >> beam.Flatten()
              | "GroupShards" >> beam.GroupByKey()
              | "WriteShards" >> beam.ParDo(WriteShard(staging, config, metadata), AsSingleton(labels)).with_outputs(
                  TALLY, main="infos"))
    tallies.append(shards[TALLY])
    dead = ((validated[DEAD], augmented[DEAD])
            | "AllDeadLetters" >> beam.Flatten()
            | "ByReason" >> beam.Map(lambda d: (d.reason, d))
            | "GroupReasons" >> beam.GroupByKey()
            | "WriteDeadLetters" >> beam.ParDo(WriteDeadLetters(staging)).with_outputs(TALLY, main="none"))
    tallies.append(dead[TALLY])
    _ = (tallies
         | "AllTallies" >> beam.Flatten()
         | "SumTallies" >> beam.CombinePerKey(sum)
         | "TallyDict" >> beam.combiners.ToDict()
         | "WriteCounts" >> beam.Map(_write_json(storage.join(staging, COUNTS_FILE))))
    _ = (shards.infos
         | "ShardInfos" >> beam.combiners.ToList()
         | "WriteShardInfos" >> beam.Map(_write_json(storage.join(staging, SHARDS_FILE))))
