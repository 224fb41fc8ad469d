"""The sink: labelled rows to format-v1 shards, rejected rows to the dead letter, both in staging.

A shard is written as an external sort, so no worker ever holds a whole shard: the rows of a shard
arrive in several small groups (runs); each run is sorted in memory and written to
`staging/runs/` (`write_run`), then `merge_runs` streams the runs of a shard through a k-way merge by
id into the shard (`zhkd.shards.write_sorted_shard`: batches of 1,000 rows, temporary name, rename).
The merged bytes depend on the rows alone, not on how many runs there were. For a remote output the
runs and the shard go through a local temporary directory and are uploaded whole.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
from collections.abc import Callable, Iterator

import pyarrow as pa

from zhkd.augment.example import Variant
from zhkd.pipelines import storage
from zhkd.pipelines.outputs import DEAD_LETTER
from zhkd.pipelines.wire import Labelled, unpack_floats, unpack_ints
from zhkd.rows import DeadLetter
from zhkd.shards import ShardInfo, read_rows, shard_name, write_shard, write_sorted_shard
from zhkd.tasks import get_task


def stored_row(task: str, variant: Variant, labelled: Labelled, tag_index: dict[str, int]) -> dict:
    """The schema's columns of a row: its stored fields and the teacher's columns (`Labelled`) joined.
    In flight, the gold is `tags` (NER, as strings) or `label` (an id, or a multilabel tuple of ids)."""
    spec = get_task(task)
    out = {"id": variant.id, "source_id": variant.source_id, "text": variant.text}
    if spec.per_token:
        out["tokens"] = list(variant.tokens)
        out["tags"] = None if variant.tags is None else [tag_index[t] for t in variant.tags]
    else:
        out["text_pair"] = variant.text_pair
        label = variant.label
        out[spec.label_field] = list(label) if spec.gold_is_list and label is not None else label
    out["is_original"] = variant.is_original
    out["ops"] = list(variant.ops)
    out["input_ids"] = unpack_ints(labelled.input_ids).tolist()
    if spec.per_token:
        out["token_starts"] = unpack_ints(labelled.token_starts).tolist()
    width = len(tag_index) if spec.per_token else None  # NER: a logit per tag at every token
    out["teacher_logits"] = unpack_floats(labelled.logits, width).tolist()
    return out


NO_LABEL = "(none)"  # the data card's name for multilabel rows whose gold set is empty


def gold_names(task: str, row: dict, label_names: list[str]) -> list[str]:
    """What the data card counts of a stored row's gold: its label, each entity (a B- tag), or each label
    of a multilabel set (NO_LABEL for an empty one); nothing for an unlabelled row."""
    spec = get_task(task)
    gold = row[spec.label_field]
    if gold is None:
        return []
    if spec.per_token:
        return [label_names[t][2:] for t in gold if label_names[t].startswith("B-")]
    if spec.multilabel:
        return [label_names[i] for i in gold] or [NO_LABEL]
    return [label_names[gold]]


RUNS = "runs"
# Record batches of a run: small, since a merge holds one batch of each of its runs (hundreds of runs
# per shard at 1M rows a shard).
RUN_BATCH_ROWS = 64


def run_name(shard: int, run: int) -> str:
    return f"run-{shard:05d}-{run:05d}.arrow"


def write_run(staging: str, shard: int, run: int, rows: list[dict], schema: pa.Schema) -> str:
    """One sorted run of a shard, under a name fixed by (shard, run): a retried task rewrites the same file."""
    name = run_name(shard, run)
    if storage.is_local(staging):
        os.makedirs(os.path.join(staging, RUNS), exist_ok=True)
        write_shard(rows, os.path.join(staging, RUNS, name), schema, RUN_BATCH_ROWS)
        return name
    with tempfile.TemporaryDirectory(prefix="zhkd-run-") as tmp:
        write_shard(rows, os.path.join(tmp, name), schema, RUN_BATCH_ROWS)
        storage.put_file(os.path.join(tmp, name), storage.join(staging, RUNS, name))
    return name


def merge_runs(staging: str, index: int, num_shards: int, runs: list[str], schema: pa.Schema,
               on_row: Callable[[dict], None] | None = None) -> ShardInfo:
    """Shard `index` from its sorted runs: a streaming k-way merge by id (one record batch per run in
    memory: 64 rows of Arrow and 16 Python rows); `on_row` sees each row as it is written."""
    name = shard_name(index, num_shards)
    with tempfile.TemporaryDirectory(prefix="zhkd-merge-") as tmp:
        if storage.is_local(staging):
            paths = [os.path.join(staging, RUNS, run) for run in sorted(runs)]
            os.makedirs(staging, exist_ok=True)
            dest = os.path.join(staging, name)
        else:
            paths = []
            for run in sorted(runs):
                paths.append(os.path.join(tmp, run))
                storage.get_file(storage.join(staging, RUNS, run), paths[-1])
            dest = os.path.join(tmp, name)
        merged = heapq.merge(*(read_rows(path) for path in paths), key=lambda row: row["id"])
        if on_row is not None:
            merged = _observed(merged, on_row)
        info = write_sorted_shard(merged, dest, schema)
        if not storage.is_local(staging):
            storage.put_file(dest, storage.join(staging, name))
    return info


def _observed(rows: Iterator[dict], on_row: Callable[[dict], None]) -> Iterator[dict]:
    for row in rows:
        on_row(row)
        yield row


def write_dead_letters(staging: str, reason: str, letters: list[DeadLetter]) -> int:
    """One JSONL file per reason, rows in source order, so reruns give the same file."""
    ordered = sorted(letters, key=lambda d: (d.source, d.position, d.raw))
    lines = "".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in ordered)
    storage.write_text(storage.join(staging, DEAD_LETTER, f"{reason}.jsonl"), lines)
    return len(ordered)
