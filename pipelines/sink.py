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
    """The schema's columns of an in-flight row (working fields such as token_type_ids stay behind)."""
    out = {"id": row["id"], "source_id": row["source_id"], "text": row["text"]}
    if get_task(task).per_token:
        out["tokens"] = list(row["tokens"])
        out["tags"] = None if row["tags"] is None else [tag_index[t] for t in row["tags"]]
    else:
        out["text_pair"] = row["text_pair"]
        out["label"] = row["label"]
    out["is_original"] = row["is_original"]
    out["ops"] = list(row["ops"])
    out["input_ids"] = list(row["input_ids"])
    if get_task(task).per_token:
        out["token_starts"] = list(row["token_starts"])
    out["teacher_logits"] = row["teacher_logits"].tolist()
    return out


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
