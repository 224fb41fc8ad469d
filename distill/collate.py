"""From rows to padded tensors: tokenisation by task, and collation with dynamic padding.

One code path serves soft-label shards (Arrow batches holding the teacher's `input_ids`) and gold
JSONL rows (tokenised here). Padding is per batch, to the longest row, built with numpy from the
Arrow list offsets rather than row by row. Multilabel gold (a list of label ids per row) becomes
multi-hot float rows. NER rows carry `token_starts`: the index of each token's
first piece in `input_ids`, -1 for a token without one (whitespace, or cut off by `max_length`);
such tokens are masked out of every loss and score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from zhkd.distill.errors import DistillError
from zhkd.tasks import get_task

IGNORE_INDEX = -100  # label of a row or token that takes no part in the hard-label loss


def encode_texts(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                 max_length: int = 512) -> list[list[int]]:
    """Input ids of single texts or text pairs, with the tokenizer's special tokens, truncated."""
    if pairs is not None and any(p is None for p in pairs):
        raise DistillError("a pair row has no text_pair")
    encoding = tokenizer(list(texts), None if pairs is None else list(pairs), truncation=True,
                         max_length=max_length, return_attention_mask=False, return_token_type_ids=False)
    return encoding["input_ids"]


def require_word_alignment(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise DistillError(f"{type(tokenizer).__name__} has no word alignment; NER needs a fast tokenizer")


def encode_tokens(tokenizer, tokens_batch: Sequence[Sequence[str]], *,
                  max_length: int | None = 512) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids of pre-split tokens, and each token's first-piece index (-1 where it has none).

    `max_length=None` leaves long rows whole (the caller windows them). Needs a fast tokenizer, whose
    word alignment says which pieces came from which token.
    """
    if not tokens_batch:
        return [], []
    require_word_alignment(tokenizer)
    encoding = tokenizer([list(t) for t in tokens_batch], is_split_into_words=True,
                         truncation=max_length is not None, max_length=max_length,
                         return_attention_mask=False, return_token_type_ids=False)
    all_starts = []
    for i, tokens in enumerate(tokens_batch):
        starts = [-1] * len(tokens)
        for position, word in enumerate(encoding.word_ids(i)):
            if word is not None and starts[word] == -1:
                starts[word] = position
        all_starts.append(starts)
    return encoding["input_ids"], all_starts


def _padded(lists: pa.ListArray, pad: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A ragged Arrow list column as a [rows, longest] array and its lengths."""
    lengths = lists.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    longest = int(lengths.max()) if len(lengths) else 0
    out = np.full((len(lengths), longest), pad, dtype=dtype)
    out[np.arange(longest) < lengths[:, None]] = lists.flatten().to_numpy(zero_copy_only=False)
    return out, lengths


def _column(batch: pa.Table | Sequence[dict], name: str, arrow_type: pa.DataType) -> pa.Array | None:
    if isinstance(batch, pa.Table):
        if name not in batch.column_names:
            return None
        return batch.column(name).combine_chunks()
    if not batch or name not in batch[0]:
        return None
    return pa.array([row.get(name) for row in batch], type=arrow_type)


@dataclass
class Collator:
    """Rows (an Arrow table or a list of dicts) to model inputs, labels and teacher logits.

    `stored_ids`: use the rows' `input_ids` / `token_starts` (the teacher tokenised them with a tokenizer of
    the same fingerprint); otherwise tokenise `text`/`text_pair` or `tokens` with `tokenizer`.
    """

    task: str
    tokenizer: Any
    max_length: int = 512
    stored_ids: bool = False
    token_types: bool = True
    num_labels: int = 0  # multilabel gold becomes multi-hot rows this wide (0: the teacher logits' width)

    def __call__(self, batch: pa.Table | Sequence[dict]) -> dict:
        import torch

        rows = batch.num_rows if isinstance(batch, pa.Table) else len(batch)
        if rows == 0:
            return {"num_rows": 0}
        if get_task(self.task).per_token:
            ids, starts = self._ner_ids(batch)
        else:
            ids, starts = self._text_ids(batch), None
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids, lengths = _padded(ids, pad_id, np.int64)
        input_ids, lengths = self._truncate(input_ids, lengths)
        mask = np.arange(input_ids.shape[1]) < lengths[:, None]
        out = {
            "num_rows": rows,
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
        }
        if self.token_types:
            out["token_type_ids"] = torch.from_numpy(self._segments(input_ids, mask))
        if get_task(self.task).per_token:
            self._add_token_targets(out, batch, starts, input_ids.shape[1])
        else:
            self._add_row_targets(out, batch)
        return out

    def _text_ids(self, batch) -> pa.ListArray:
        if self.stored_ids:
            return _column(batch, "input_ids", pa.list_(pa.int32()))
        texts = _column(batch, "text", pa.string()).to_pylist()
        pairs = _column(batch, "text_pair", pa.string()) if get_task(self.task).has_pair else None
        ids = encode_texts(self.tokenizer, texts, None if pairs is None else pairs.to_pylist(),
                           max_length=self.max_length)
        return pa.array(ids, type=pa.list_(pa.int32()))

    def _ner_ids(self, batch) -> tuple[pa.ListArray, pa.ListArray]:
        if self.stored_ids:
            return (_column(batch, "input_ids", pa.list_(pa.int32())),
                    _column(batch, "token_starts", pa.list_(pa.int32())))
        tokens = _column(batch, "tokens", pa.list_(pa.string())).to_pylist()
        ids, starts = encode_tokens(self.tokenizer, tokens, max_length=self.max_length)
        return pa.array(ids, type=pa.list_(pa.int32())), pa.array(starts, type=pa.list_(pa.int32()))

    def _truncate(self, input_ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored ids longer than the student accepts: cut, and end the cut rows with [SEP]."""
        if input_ids.shape[1] <= self.max_length:
            return input_ids, lengths
        cut = lengths > self.max_length
        input_ids = input_ids[:, : self.max_length].copy()
        if self.tokenizer.sep_token_id is not None:
            input_ids[cut, -1] = self.tokenizer.sep_token_id
        return input_ids, np.minimum(lengths, self.max_length)

    def _segments(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Segment 1 after the first [SEP] (BERT's pair layout); all zeros for single texts."""
        sep = self.tokenizer.sep_token_id
        if not get_task(self.task).has_pair or sep is None:
            return np.zeros_like(input_ids)
        is_sep = input_ids == sep
        after_first = (np.cumsum(is_sep, axis=1) - is_sep) >= 1
        return (after_first & mask).astype(np.int64)

    def _add_row_targets(self, out: dict, batch) -> None:
        import torch

        logits = _column(batch, "teacher_logits", pa.list_(pa.float32()))
        if logits is not None:
            padded, lengths = _padded(logits, 0.0, np.float32)
            if len(set(lengths.tolist())) != 1:
                raise DistillError("teacher_logits rows differ in length within a batch")
            out["teacher_logits"] = torch.from_numpy(padded)
        if get_task(self.task).multilabel:
            sets = _column(batch, "labels", pa.list_(pa.int32()))
            if sets is not None:
                width = self.num_labels or (out["teacher_logits"].shape[1] if logits is not None else 0)
                out["labels"] = torch.from_numpy(_multi_hot(sets, width))
            return
        labels = _column(batch, "label", pa.int32())
        if labels is not None:
            values = labels.fill_null(IGNORE_INDEX).to_numpy(zero_copy_only=False).astype(np.int64)
            out["labels"] = torch.from_numpy(values)

    def _add_token_targets(self, out: dict, batch, starts: pa.ListArray, seq_len: int) -> None:
        import torch

        token_starts, _ = _padded(starts, -1, np.int64)
        token_starts[token_starts >= seq_len] = -1  # the piece was cut off by truncation
        out["token_starts"] = torch.from_numpy(token_starts)
        out["token_mask"] = torch.from_numpy(token_starts >= 0)
        width = token_starts.shape[1]
        tags = _column(batch, "tags", pa.list_(pa.int32()))
        if tags is not None:
            labels, _ = _padded(tags, IGNORE_INDEX, np.int64)
            if labels.shape != token_starts.shape:
                raise DistillError("tags and tokens differ in length in a batch")
            labels[token_starts < 0] = IGNORE_INDEX
            out["labels"] = torch.from_numpy(labels)
        logits = _column(batch, "teacher_logits", pa.list_(pa.list_(pa.float32())))
        if logits is not None:
            per_token = logits.flatten()
            num_labels = int(per_token.value_lengths().to_numpy()[0]) if len(per_token) else 0
            values = per_token.flatten().to_numpy(zero_copy_only=False).reshape(-1, num_labels)
            counts = logits.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
            dense = np.zeros((len(counts), width, num_labels), dtype=np.float32)
            dense[np.arange(width) < counts[:, None]] = values
            out["teacher_logits"] = torch.from_numpy(dense)


def _multi_hot(sets: pa.ListArray, width: int) -> np.ndarray:
    """Label-id lists as [rows, width] float targets: 1 for each listed label, else 0; a null row (no gold)
    is IGNORE_INDEX throughout, so the hard loss skips it."""
    if width < 1:
        raise DistillError("multilabel gold needs the number of labels (Collator num_labels)")
    lengths = sets.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ids = sets.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= width):
        raise DistillError(f"a multilabel gold id lies outside 0..{width - 1}")
    targets = np.zeros((len(lengths), width), dtype=np.float32)
    targets[np.repeat(np.arange(len(lengths)), lengths), ids] = 1.0
    targets[sets.is_null().to_numpy(zero_copy_only=False)] = IGNORE_INDEX
    return targets


def gather_token_logits(logits, token_starts):
    """Per-piece logits [B, L, C] to per-token logits [B, T, C] at each token's first piece."""
    import torch

    index = token_starts.clamp(min=0).unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    return torch.gather(logits, 1, index)
