"""The sink: labelled rows to format-v1 shards, rejected rows to the dead letter, both in staging.

Shards are written through `zhkd.shards.write_shard` (rows sorted by id, temporary name, rename);
for a remote output the shard is written locally and uploaded whole.
"""

from __future__ import annotations

import json
import os
import tempfile

import pyarrow as pa

from zhkd.pipelines import storage
from zhkd.pipelines.outputs import DEAD_LETTER
from zhkd.rows import DeadLetter
from zhkd.shards import ShardInfo, shard_name, write_shard
from zhkd.tasks import get_task


def stored_row(task: str, row: dict, tag_index: dict[str, int]) -> dict:
    """The schema's columns of an in-flight row (working fields such as token_type_ids stay behind).
    In flight, the gold is `tags` (NER, as strings) or `label` (an id, or a multilabel tuple of ids)."""
    spec = get_task(task)
    out = {"id": row["id"], "source_id": row["source_id"], "text": row["text"]}
    if spec.per_token:
        out["tokens"] = list(row["tokens"])
        out["tags"] = None if row["tags"] is None else [tag_index[t] for t in row["tags"]]
    else:
        out["text_pair"] = row["text_pair"]
        out[spec.label_field] = list(row["label"]) if spec.gold_is_list and row["label"] is not None else row["label"]
    out["is_original"] = row["is_original"]
    out["ops"] = list(row["ops"])
    out["input_ids"] = list(row["input_ids"])
    if get_task(task).per_token:
        out["token_starts"] = list(row["token_starts"])
    out["teacher_logits"] = row["teacher_logits"].tolist()
    return out


NO_LABEL = "(none)"  # the data card's name for multilabel rows whose gold set is empty


def gold_names(task: str, row: dict, label_names: list[str]) -> list[str]:
    """What the data card counts of a row's gold: its label, each entity (a B- tag), or each label of a
    multilabel set (NO_LABEL for an empty one); nothing for an unlabelled row."""
    spec = get_task(task)
    if spec.per_token:
        return [tag[2:] for tag in row["tags"] or () if tag.startswith("B-")]
    if row["label"] is None:
        return []
    if spec.multilabel:
        return [label_names[i] for i in row["label"]] or [NO_LABEL]
    return [label_names[row["label"]]]


def write_shard_to(staging: str, index: int, num_shards: int, rows: list[dict], schema: pa.Schema) -> ShardInfo:
    name = shard_name(index, num_shards)
    if storage.is_local(staging):
        os.makedirs(staging, exist_ok=True)
        return write_shard(rows, os.path.join(staging, name), schema)
    with tempfile.TemporaryDirectory(prefix="zhkd-shard-") as tmp:
        info = write_shard(rows, os.path.join(tmp, name), schema)
        storage.put_file(os.path.join(tmp, name), storage.join(staging, name))
    return info


def write_dead_letters(staging: str, reason: str, letters: list[DeadLetter]) -> int:
    """One JSONL file per reason, rows in source order, so reruns give the same file."""
    ordered = sorted(letters, key=lambda d: (d.source, d.position, d.raw))
    lines = "".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in ordered)
    storage.write_text(storage.join(staging, DEAD_LETTER, f"{reason}.jsonl"), lines)
    return len(ordered)
