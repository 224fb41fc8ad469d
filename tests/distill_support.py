"""Soft-label datasets for the trainer's tests, written straight through the shard format (no Beam)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from zhkd.distill.collate import encode_texts, encode_tokens
from zhkd.distill.predict import predict_logits, read_task_rows
from zhkd.models import load_model, load_tokenizer, tokenizer_fingerprint, weights_fingerprint
from zhkd.shards import finalize, schema_for, shard_name, shard_of, write_shard
from zhkd.tasks import get_task

DATA = Path(__file__).resolve().parents[1] / "pipelines" / "data"


def corpus_file(name: str, split: str) -> Path:
    return DATA / f"{name}.{split}.jsonl.gz"


def write_subset(path: Path, name: str, split: str, rows: int) -> Path:
    """The first `rows` rows of a bundled corpus split, as a plain JSONL file."""
    with gzip.open(corpus_file(name, split), "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(rows)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def soft_label_rows(task: str, rows: list[dict], tokenizer, logits: list) -> list[dict]:
    """Rows of the shard format from task rows, the teacher's tokenisation and its logits."""
    out = []
    spec = get_task(task)
    if spec.per_token:
        ids, starts = encode_tokens(tokenizer, [r["tokens"] for r in rows], max_length=512)
        for row, row_ids, row_starts, row_logits in zip(rows, ids, starts, logits, strict=True):
            out.append({"id": row["id"], "source_id": row["id"], "text": "".join(row["tokens"]),
                        "tokens": row["tokens"], "tags": row["tags"], "is_original": True, "ops": [],
                        "input_ids": row_ids, "token_starts": row_starts, "teacher_logits": row_logits})
        return out
    pairs = [r["text_pair"] for r in rows] if spec.has_pair else None
    ids = encode_texts(tokenizer, [r["text"] for r in rows], pairs, max_length=512)
    for row, row_ids, row_logits in zip(rows, ids, logits, strict=True):
        out.append({"id": row["id"], "source_id": row["id"], "text": row["text"], "text_pair": row.get("text_pair"),
                    spec.label_field: row[spec.label_field], "is_original": True, "ops": [], "input_ids": row_ids,
                    "teacher_logits": row_logits})
    return out


def write_dataset(out_dir: Path, task: str, rows: list[dict], label_names: list[str], *, num_shards: int = 3,
                  tokenizer_sha256: str | None = None, teacher_sha256: str | None = None) -> Path:
    """Shards, state files, manifest and COMPLETED, as the Beam sink writes them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = schema_for(task, label_names=label_names)
    buckets: dict[int, list[dict]] = {k: [] for k in range(num_shards)}
    for row in rows:
        buckets[shard_of(row["id"], num_shards)].append(row)
    shards = [write_shard(buckets[k], out_dir / shard_name(k, num_shards), schema) for k in range(num_shards)]
    # The teacher record as `zhkd build` writes it (pipelines/build.py).
    teacher = {"tokenizer_sha256": tokenizer_sha256, "weights_sha256": teacher_sha256}
    manifest = {"config_hash": "test", "teacher": teacher}
    finalize(out_dir, schema, shards, manifest)
    return out_dir


def label_with_teacher(out_dir: Path, task: str, source: Path, teacher_dir: Path, *, num_shards: int = 3) -> Path:
    """A dataset of `source`'s rows labelled by the teacher checkpoint (raw logits, T=1)."""
    model, tokenizer = load_model(get_task(task).model_kind, teacher_dir), load_tokenizer(teacher_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    rows, _ = read_task_rows(source, task, labels)
    logits = predict_logits(model, tokenizer, rows, task)
    return write_dataset(out_dir, task, soft_label_rows(task, rows, tokenizer, logits), labels,
                         num_shards=num_shards, tokenizer_sha256=tokenizer_fingerprint(tokenizer),
                         teacher_sha256=weights_fingerprint(teacher_dir))


def read_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text("utf-8").splitlines()]
