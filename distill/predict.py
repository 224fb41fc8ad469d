"""Batched inference for every task, and the task-file reader that evaluation and fine-tuning share.

Rows are sorted by length so each batch pads little, run under `inference_mode`, and returned in
input order. NER logits are those of each token's first piece. A token without a piece of its own
(whitespace, which the tokenizer drops) gets all-zero logits, a uniform distribution: the model said
nothing about it, and `predict_labels` tags it with the outside label "O" (label 0 without one).
NER rows longer than `max_length` pieces are cut into consecutive windows at token boundaries, so
every token is predicted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from zhkd.distill.collate import Collator, encode_texts, encode_tokens, gather_token_logits, require_word_alignment
from zhkd.distill.errors import DistillError
from zhkd.tasks import get_task


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _ner_windows(tokenizer, rows: Sequence[dict], max_length: int) -> list[tuple[int, int, int]]:
    """(row, first token, end token) windows whose pieces fit in `max_length` with the special tokens."""
    require_word_alignment(tokenizer)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    encoding = tokenizer([list(r["tokens"]) for r in rows], is_split_into_words=True, truncation=False,
                         return_attention_mask=False, return_token_type_ids=False)
    windows = []
    for index, row in enumerate(rows):
        pieces = [0] * len(row["tokens"])
        for word in encoding.word_ids(index):
            if word is not None:
                pieces[word] += 1
        begin, used = 0, 0
        for t, count in enumerate(pieces):
            if used + count > budget and t > begin:
                windows.append((index, begin, t))
                begin, used = t, 0
            used += count
        windows.append((index, begin, len(pieces)))
    return windows


def _predict(model, tokenizer, rows: Sequence[dict], task: str, *, batch_size: int, max_length: int,
             device: str | None, progress: bool) -> tuple[list, list[list[bool]] | None]:
    """Logits per row (per token for NER) and, for NER, which tokens had a piece."""
    import torch
    from tqdm import tqdm

    get_task(task)  # refuses an unknown task
    device = _device(device)
    max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    collate = Collator(task, tokenizer, max_length=max_length, stored_ids=True,
                       token_types=getattr(model.config, "type_vocab_size", 1) > 1)
    if get_task(task).per_token:
        units = _ner_windows(tokenizer, rows, max_length)
        ids, starts = encode_tokens(tokenizer, [rows[r]["tokens"][a:b] for r, a, b in units], max_length=max_length)
        items = [{"input_ids": i, "token_starts": s} for i, s in zip(ids, starts, strict=True)]
    else:
        pairs = [r.get("text_pair") for r in rows] if get_task(task).has_pair else None
        ids = encode_texts(tokenizer, [r["text"] for r in rows], pairs, max_length=max_length)
        units = [(i, 0, 0) for i in range(len(rows))]
        items = [{"input_ids": i} for i in ids]
    order = sorted(range(len(items)), key=lambda i: (len(items[i]["input_ids"]), i))
    results: list = [None] * len(items)
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            for begin in tqdm(range(0, len(order), batch_size), desc="predict", unit="batch", disable=not progress,
                              leave=False):
                chosen = order[begin : begin + batch_size]
                batch = collate([items[i] for i in chosen])
                inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")
                          if k in batch}
                logits = model(**inputs).logits.float()
                if get_task(task).per_token:
                    logits = gather_token_logits(logits, batch["token_starts"].to(device))
                    logits = logits.masked_fill(~batch["token_mask"].to(device).unsqueeze(-1), 0.0)
                for row, i in zip(logits.cpu().tolist(), chosen, strict=True):
                    results[i] = row
    finally:
        model.train(was_training)
    if not get_task(task).per_token:
        return results, None
    per_row: list[list] = [[] for _ in rows]
    has_piece: list[list[bool]] = [[] for _ in rows]
    for (row, a, b), logits, item in zip(units, results, items, strict=True):
        per_row[row].extend(logits[: b - a])
        has_piece[row].extend(s >= 0 for s in item["token_starts"][: b - a])
    return per_row, has_piece


def predict_logits(model, tokenizer, rows: Sequence[dict], task: str, *, batch_size: int = 32,
                   max_length: int = 512, device: str | None = None, progress: bool = False) -> list:
    """Raw logits in input order: a list of floats per row, or per token of `row["tokens"]` for NER."""
    logits, _ = _predict(model, tokenizer, rows, task, batch_size=batch_size, max_length=max_length,
                         device=device, progress=progress)
    return logits


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the first on ties (as torch.argmax)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def present_labels(logits: Sequence[float], threshold: float = 0.5) -> list[int]:
    """Multilabel: the ids whose sigmoid reaches `threshold` (0.5: the logit is at least 0)."""
    cut = math.log(threshold / (1.0 - threshold))
    return [i for i, z in enumerate(logits) if z >= cut]


def predict_labels(model, tokenizer, rows: Sequence[dict], task: str, **kwargs) -> list[int] | list[list[int]]:
    """Label ids: one per row, a list per row for multilabel (sigmoid >= 0.5), or one per token for NER
    (tokens without a piece get the outside label)."""
    logits, has_piece = _predict(model, tokenizer, rows, task, batch_size=kwargs.pop("batch_size", 32),
                                 max_length=kwargs.pop("max_length", 512), device=kwargs.pop("device", None),
                                 progress=kwargs.pop("progress", False))
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
    if get_task(task).multilabel:
        return [present_labels(row) for row in logits]
    if not get_task(task).per_token:
        return [argmax(row) for row in logits]
    outside = getattr(model.config, "label2id", {}).get("O", 0)
    return [[argmax(t) if piece else outside for t, piece in zip(row, pieces, strict=True)]
            for row, pieces in zip(logits, has_piece, strict=True)]


def _default_label_order(task: str, seen: set[str]) -> list[str]:
    """Sorted labels; for NER "O" first, then each entity type's B- before its I-."""
    if not get_task(task).per_token:
        return sorted(seen)
    def key(tag: str) -> tuple:
        prefix, _, etype = tag.partition("-")
        return (tag != "O", etype, prefix)
    return sorted(seen, key=key)


def read_task_rows(path: str | Path, task: str, label_names: list[str] | None = None, *,
                   require_labels: bool = True) -> tuple[list[dict], list[str]]:
    """Rows of a task file (JSONL, CSV or TSV, `.gz` too), checked by `zhkd.rows`, labels mapped to ids.

    Classification: {"id", "text", "label"}; pair adds "text_pair"; multilabel: {"id", "text", "labels"}
    with a list (possibly empty) of labels; NER: {"id", "tokens", "tags"}. Labels are names (or ids into
    `label_names`). Without `label_names` the label set is the file's, sorted (NER: "O" first). The first
    bad row raises DistillError naming file:line and the reason: a training or test file is used whole or
    not at all. With `require_labels=False` a row may omit its label (its label becomes None).
    """
    from zhkd.rows import BLANK, Fields, Validator, label_values, read_file

    spec = get_task(task)  # refuses an unknown task
    path = Path(path)
    records = [r for r in read_file(path) if r.error != BLANK]
    if not records:
        raise DistillError(f"{path}: no rows")
    if label_names is None:
        seen = {v for record in records for v in label_values(task, Fields(), record)}
        if any(not isinstance(v, str) for v in seen):
            raise DistillError(f"{path}: integer labels need the label names")
        label_names = _default_label_order(task, seen)
    validator = Validator(task, Fields(), label_names, max_chars=None, allow_unlabeled=not require_labels)
    rows = []
    for record in records:
        checked = validator.check(record)
        if checked.dead is not None:
            raise DistillError(f"{path}:{record.position}: {checked.dead.detail} ({checked.dead.reason})")
        example = checked.example
        if spec.per_token:
            tags = None if example.tags is None else [validator.index[t] for t in example.tags]
            rows.append({"id": example.id, "tokens": list(example.tokens), "tags": tags})
        else:
            gold = list(example.label) if spec.gold_is_list and example.label is not None else example.label
            row = {"id": example.id, "text": example.text, spec.label_field: gold}
            if spec.has_pair:
                row["text_pair"] = example.text_pair
            rows.append(row)
    return rows, list(label_names)
