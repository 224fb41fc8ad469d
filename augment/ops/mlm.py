"""`mlm`: whole-word masking with a masked language model, batched, with lexicon-constrained fills.

Each content word (outside entities, no negator, at most MAX_WORD_CHARS characters) is a slot. A slot's
characters are all masked together; a single-character word takes the model's top-K common characters
(never a special token, a non-CJK piece, a negator or the original); a longer word takes the top-K
dictionary words of its length (jieba's dictionary, common characters only) scored by the sum of the
per-position log-probabilities. A variant draws its fills uniformly from each chosen slot's top-K.

Speed on a CPU comes from fewer and shorter forwards rather than from batching alone: one row masks
several words spread across the sentence (up to MASK_SHARE of its characters), there is no doubled
sentence, the encoder output is gathered at the masked positions before the LM head, and candidates
are computed once per sentence for all its variants.

Exactness: a row's result never depends on the rows it is batched with. Floating-point kernels pick
their blocking by shape, so a row computed in a batch of 3 and in a batch of 17 can differ in the last
bits and flip a top-K boundary. Hence every forward has one shape per length bucket (`batch_rows` rows
padded to a fixed length ladder, missing rows filled with padding, the LM head always on
`batch_rows * max_masked` gathered positions); with fixed shapes each row is computed by the same
kernels whatever its neighbours, so `variants_batch` equals one `variants` call per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from zhkd.augment.charset import NEGATORS, common_chars, is_cjk_word, is_plain_word
from zhkd.augment.errors import AugmentError
from zhkd.augment.lexicon import ENTITY_TAGS, dictionary_freq, dictionary_tag
from zhkd.augment.ops.base import check_rate, content_words, count_for
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented

MAX_WORD_CHARS = 4
MASK_SHARE = 0.15
LENGTH_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
FILL_MIN_FREQ = 20

_MODELS: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class Row:
    """One forward row: token ids ([CLS] ... [SEP]) with some slots masked, and where each slot sits."""

    ids: tuple[int, ...]
    slots: tuple[tuple[int, tuple[int, ...], str], ...]   # (word index, token positions, the word)


class Mlm:
    name = "mlm"
    span_safe = True

    def __init__(self, model: str, p: float = 0.2, top_k: int = 15, max_length: int = 256,
                 batch_rows: int | None = None, max_masked: int = 12, device: str = "auto") -> None:
        if not model:
            raise AugmentError("mlm: needs a masked-LM checkpoint (a local directory or a hub id)")
        if max_length not in LENGTH_LADDER:
            raise AugmentError(f"mlm: max_length must be one of {LENGTH_LADDER}, got {max_length}")
        self.model = str(model)
        self.p = check_rate(self.name, p)
        # Rows per forward: None picks 8 on a CPU (less padding waste) and 64 on a GPU.
        self.top_k, self.max_length, self.batch_rows, self.max_masked = top_k, max_length, batch_rows, max_masked
        self.device = device  # auto: CUDA when present; one model per process and device
        self.key = f"mlm:{self.model}:{top_k}:{max_length}:{batch_rows}:{max_masked}:{device}"

    def load(self) -> None:
        loaded(self.model, self.device)

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        if self.key not in seg.memo:
            self.prepare([seg])
        slots = seg.memo[self.key]
        chosen = rng.sample(slots, count_for(self.p, len(slots)))
        if not chosen:
            return None
        return seg.replace({i: cands[rng.randrange(len(cands))] for i, cands in chosen})

    def prepare(self, segs: list[Segmented]) -> None:
        """Fill candidates for every sentence not yet done, in fixed-shape batches across all of them."""
        todo = list({id(s): s for s in segs if self.key not in s.memo}.values())
        if not todo:
            return
        lm = loaded(self.model, self.device)
        batch_rows = self.batch_rows or lm.batch_rows
        rows_by_len: dict[int, list[tuple[int, Row]]] = {}
        for n, seg in enumerate(todo):
            for row in self.rows(seg, lm):
                bucket = next(b for b in LENGTH_LADDER if b >= len(row.ids))
                rows_by_len.setdefault(bucket, []).append((n, row))
        found: list[list[tuple[int, tuple[str, ...]]]] = [[] for _ in todo]
        for bucket, rows in sorted(rows_by_len.items()):
            for start in range(0, len(rows), batch_rows):
                batch = rows[start:start + batch_rows]
                filled = self.fill(lm, [r for _, r in batch], bucket, batch_rows)
                for (n, _), slot_cands in zip(batch, filled, strict=True):
                    found[n] += slot_cands
        for seg, slots in zip(todo, found, strict=True):
            seg.memo[self.key] = sorted((i, c) for i, c in slots if c)

    def rows(self, seg: Segmented, lm: LoadedModel) -> list[Row]:
        """Rows for a sentence: chunks of at most max_length - 2 tokens at word boundaries, and in each
        chunk the slots dealt round-robin into as few rows as keep every row under its masking budget."""
        chunks: list[list[int]] = [[]]
        size = 0
        for i, word in enumerate(seg.words):
            n = len(lm.token_ids(word))
            if size + n > self.max_length - 2 and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(i)
            size += n
        eligible = set(i for i in content_words(seg) if len(seg.words[i]) <= MAX_WORD_CHARS
                       and all(c in lm.vocab for c in seg.words[i]))
        rows = []
        for chunk in chunks:
            ids = [lm.cls_id]
            where: dict[int, tuple[int, ...]] = {}
            for i in chunk:
                pieces = lm.token_ids(seg.words[i])[: self.max_length - 2]
                where[i] = tuple(range(len(ids), len(ids) + len(pieces)))
                ids += pieces
            ids = ids[: self.max_length - 1] + [lm.sep_id]
            slots = [i for i in chunk if i in eligible and where[i] and where[i][-1] < len(ids) - 1]
            if not slots:
                continue
            cap = min(self.max_masked, max(max(len(where[i]) for i in slots), math.ceil(MASK_SHARE * (len(ids) - 2))))
            count = math.ceil(sum(len(where[i]) for i in slots) / cap)
            while True:
                dealt = [slots[r::count] for r in range(count)]
                if all(sum(len(where[i]) for i in d) <= cap for d in dealt):
                    break
                count += 1
            for d in dealt:
                masked = list(ids)
                for i in d:
                    for pos in where[i]:
                        masked[pos] = lm.mask_id
                rows.append(Row(tuple(masked), tuple((i, where[i], seg.words[i]) for i in d)))
        return rows

    def fill(self, lm: LoadedModel, rows: list[Row], length: int,
             batch_rows: int) -> list[list[tuple[int, tuple[str, ...]]]]:
        """Top-K fills for every slot of a batch of rows, from one fixed-shape forward."""
        import torch

        ids = torch.full((batch_rows, length), lm.pad_id, dtype=torch.long)
        attention = torch.zeros((batch_rows, length), dtype=torch.long)
        gather = torch.zeros((batch_rows, self.max_masked), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row.ids)] = torch.tensor(row.ids)
            attention[r, : len(row.ids)] = 1
            positions = [p for _, where, _ in row.slots for p in where]
            gather[r, : len(positions)] = torch.tensor(positions)
        logprobs = lm.masked_logprobs(ids, attention, gather)   # (batch_rows, max_masked, vocab)
        out = []
        for r, row in enumerate(rows):
            at = 0
            found = []
            for i, where, word in row.slots:
                scores = logprobs[r, at: at + len(where)]
                at += len(where)
                found.append((i, lm.best_fills(scores, word, self.top_k)))
            out.append(found)
        return out


class LoadedModel:
    """A masked LM, its character vocabulary and the candidate tables, once per process and checkpoint."""

    def __init__(self, name: str, device: str = "auto") -> None:
        import torch
        import transformers

        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=False)
            model = transformers.AutoModelForMaskedLM.from_pretrained(name, use_safetensors=True,
                                                                      trust_remote_code=False)
        except (OSError, ValueError) as err:
            raise AugmentError(f"mlm: cannot load a masked-LM checkpoint from {name}: {err}") from err
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise AugmentError(f"mlm: device {device} asked for, but torch sees no CUDA device here")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_rows = 64 if self.device.type == "cuda" else 8
        self.encoder = model.base_model
        self.head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
        self.vocab: dict[str, int] = self.tokenizer.get_vocab()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.cls_id, self.sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        self.mask_id, self.unk_id = self.tokenizer.mask_token_id, self.tokenizer.unk_token_id
        if None in (self.cls_id, self.sep_id, self.mask_id):
            raise AugmentError(f"mlm: {name} has no [CLS]/[SEP]/[MASK] tokens; a BERT-style masked LM is needed")
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        special = set(self.tokenizer.all_special_ids)
        common = common_chars()
        single = sorted(i for t, i in self.vocab.items() if len(t) == 1 and t in common and t not in NEGATORS
                        and i not in special and i < self.vocab_size)
        self.single_ids = torch.tensor(single, dtype=torch.long)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self._words: dict[int, tuple[tuple[str, ...], Any, dict[str, int]]] = {}

    def token_ids(self, word: str) -> list[int]:
        """One id per character (whitespace dropped): the model must have a character vocabulary."""
        return [self.vocab.get(c, self.unk_id) for c in word if not c.isspace()]

    def dictionary_words(self, length: int):
        """jieba dictionary words of this length that fills may use, and their token ids."""
        if length not in self._words:
            import torch

            freq = dictionary_freq()
            words = tuple(sorted(w for w, n in freq.items() if len(w) == length and n >= FILL_MIN_FREQ
                                 and (dictionary_tag(w) or "x") not in ENTITY_TAGS and is_cjk_word(w)
                                 and is_plain_word(w) and all(c in self.vocab for c in w)))
            # One contiguous id column per position: index_select on a strided column is 200x slower.
            ids = [torch.tensor([self.vocab[w[j]] for w in words], dtype=torch.long) for j in range(length)]
            self._words[length] = (words, ids, {w: n for n, w in enumerate(words)})
        return self._words[length]

    def masked_logprobs(self, ids, attention, gather):
        import torch

        with torch.inference_mode():
            ids, attention, gather = ids.to(self.device), attention.to(self.device), gather.to(self.device)
            if self.head is None:    # no separable head: full logits, then gather (slower, same result shape)
                logits = self.model(input_ids=ids, attention_mask=attention).logits
                picked = logits.gather(1, gather.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
            else:
                hidden = self.encoder(input_ids=ids, attention_mask=attention).last_hidden_state
                at = gather.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
                picked = self.head(hidden.gather(1, at))
            return torch.log_softmax(picked.float(), dim=-1).cpu()

    def best_fills(self, scores, original: str, top_k: int) -> tuple[str, ...]:
        """Top-K fills other than the original word, given its per-position log-probabilities (positions x vocab)."""
        import torch

        if scores.shape[0] == 1:
            allowed = scores[0].index_select(0, self.single_ids)
            best = torch.topk(allowed, min(top_k + 1, allowed.numel())).indices
            fills = [self.id_to_token[i] for i in self.single_ids.index_select(0, best).tolist()]
        else:
            words, ids, _ = self.dictionary_words(scores.shape[0])
            if not words:
                return ()
            total = scores[0].index_select(0, ids[0])
            for j in range(1, len(ids)):
                total += scores[j].index_select(0, ids[j])
            best = torch.topk(total, min(top_k + 1, total.numel())).indices
            fills = [words[b] for b in best.tolist()]
        return tuple(f for f in fills if f != original)[:top_k]


def loaded(name: str, device: str = "auto") -> LoadedModel:
    """The process's one copy of a masked LM on a device."""
    if (name, device) not in _MODELS:
        _MODELS[name, device] = LoadedModel(name, device)
    return _MODELS[name, device]
