"""Pre-training a small character masked-language model from raw text.

No Chinese BERT weights install offline, so the embedded default teacher (and the augmentation's MLM)
starts here: a character vocabulary built from the input, a catalogue-shaped BERT, and a plain loop.
With `init` the loop continues a BERT masked LM instead (its weights and its tokenizer): the embedded
encoder trained further, since its optimiser state is not shipped, or any checkpoint adapted to a domain's
raw text before fine-tuning.

Why it looks the way it does:
- Texts are packed greedily into blocks of `max_length` (`[CLS] a [SEP] b [SEP] ...`), so a batch of
  short sentences wastes no compute on padding.
- Masking is dynamic (drawn afresh every step): 15% of characters, or of jieba words with
  `whole_word`, of which 80% become [MASK], 10% a random character and 10% stay.
- Vocabulary logits are computed only at the masked positions: the full-vocabulary projection at
  every position would otherwise dominate a small model's step on CPU.
- Every random draw of a step (masking, dropout) comes from a seed derived from (seed, step), and the
  data order of an epoch from (seed, epoch). A run is therefore a pure function of its input and
  config, and a resumed run ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from zhkd.distill.checkpoints import Checkpoints
from zhkd.distill.errors import DistillError
from zhkd.distill.students import get_shape
from zhkd.models import char_vocab, load_model, load_tokenizer, save_char_tokenizer, weights_fingerprint
from zhkd.outputs import write_atomic

LOG_FILE = "log.jsonl"  # the trainer's names: one run layout for pre-training and training
SUMMARY_FILE = "summary.json"  # written last: its presence means the run is complete
TEXT_FIELDS = ("text", "text_pair")


@dataclass(frozen=True)
class PretrainConfig:
    shape: str = "small"
    vocab_size: int | None = None  # most frequent characters kept, special tokens included; None keeps all
    min_count: int = 1  # characters seen fewer times become [UNK]
    max_length: int = 128
    batch_size: int = 32
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when given
    lr: float = 5e-4
    warmup: float = 0.06  # fraction of the steps warming the learning rate up from zero
    weight_decay: float = 0.01
    mask_prob: float = 0.15
    whole_word: bool = False
    char_vectors: str | None = None  # word vectors (zhkd.distill.wordvectors) to start the character embeddings
    init: str | None = None  # a BERT masked LM to continue (weights and tokenizer); None: a new `shape` model
    seed: int = 0
    log_every: int = 10
    save_every: int = 200  # steps between resume checkpoints; 0 saves none
    device: str | None = None  # None: CUDA when present, else CPU

    def __post_init__(self) -> None:
        get_shape(self.shape)
        if self.max_length < 8:
            raise DistillError(f"max length {self.max_length} is too short; use at least 8")
        if self.init:
            # A vocabulary or embeddings of its own would silently replace the checkpoint's.
            if self.vocab_size is not None or self.min_count != 1 or self.char_vectors:
                raise DistillError("--init keeps the checkpoint's vocabulary and embeddings: drop --vocab-size, "
                                   "--min-count and --char-vectors")
        elif self.max_length > get_shape(self.shape).max_positions:
            raise DistillError(f"max length {self.max_length} exceeds the {self.shape} shape's positions")
        if self.batch_size < 1 or self.epochs <= 0 or (self.max_steps is not None and self.max_steps < 1):
            raise DistillError("batch size, epochs and max steps must be positive")
        if not 0 < self.mask_prob < 1:
            raise DistillError(f"mask probability {self.mask_prob} must lie in (0, 1)")
        if self.lr <= 0 or not 0 <= self.warmup < 1:
            raise DistillError("learning rate must be positive and warm-up ratio in [0, 1)")
        if self.log_every < 1 or self.save_every < 0:
            raise DistillError("--log-every must be at least 1 and --save-every not negative")
        if self.char_vectors and not Path(self.char_vectors).is_file():
            raise DistillError(f"--char-vectors: no word-vector file at {self.char_vectors}")


# --- input -------------------------------------------------------------------------------------------


def _is_jsonl(path: Path) -> bool:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    return bool(suffixes) and suffixes[0] in (".jsonl", ".json")


def read_texts(paths: Iterable[str | Path], counts: dict[str, int] | None = None) -> Iterator[str]:
    """Texts of plain text files (one per line) or JSONL rows (`text`, `text_pair`, or `tokens` joined).

    Read as the task files are (`zhkd.rows.lines`): bytes that are not UTF-8, or a line over the length
    cap, stop the run naming `file:line` rather than being replaced or read whole. Blank lines are
    skipped; JSONL rows without any text field are counted in `counts["dropped"]`.
    """
    from zhkd.rows import MAX_LINE_BYTES, lines, open_binary

    counts = counts if counts is not None else {}
    counts.setdefault("dropped", 0)
    for path in map(Path, paths):
        if not path.is_file():
            raise DistillError(f"{path}: no such file")
        jsonl = _is_jsonl(path)
        with open_binary(path) as f:
            for line_no, raw, too_long in lines(f):
                where = f"{path}:{line_no}"
                if too_long:
                    raise DistillError(f"{where}: a line over {MAX_LINE_BYTES:,} bytes; split the text into lines")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DistillError(f"{where}: not UTF-8 text (byte {err.start + 1} of the line)") from None
                if not line.strip():
                    continue
                if not jsonl:
                    yield line.strip()
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DistillError(f"{where}: not a JSON row ({err.msg})") from None
                texts = [row[k] for k in TEXT_FIELDS if isinstance(row, dict) and isinstance(row.get(k), str)]
                if isinstance(row, dict) and isinstance(row.get("tokens"), list):
                    texts.append("".join(map(str, row["tokens"])))
                texts = [t.strip() for t in texts if t.strip()]
                if not texts:
                    counts["dropped"] += 1
                yield from texts


# --- blocks and masking --------------------------------------------------------------------------------


def _word_of_chars(texts: list[str]) -> list[list[int]]:
    """For each text, the index of the jieba word each character belongs to (whole-word masking)."""
    from zhkd.augment.segment import segmenter

    words = segmenter().words
    return [[index for index, word in enumerate(words(text)) for _ in word] for text in texts]


def encode_texts(tokenizer, texts: list[str], *, whole_word: bool) -> list[tuple[list[int], list[int]]]:
    """Token ids of each text and, per token, the unit masking picks as a whole (a character or a word)."""
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=whole_word, verbose=False)
    if not whole_word:
        return [(ids, list(range(len(ids)))) for ids in encoded["input_ids"]]
    word_of = _word_of_chars(texts)
    return [
        (ids, [words[start] if start < len(words) else len(words) for start, _ in offsets])
        for ids, offsets, words in zip(encoded["input_ids"], encoded["offset_mapping"], word_of, strict=True)
    ]


def pack_blocks(encoded: list[tuple[list[int], list[int]]], max_length: int, cls_id: int, sep_id: int):
    """Greedy packing into `[CLS] a [SEP] b [SEP] ...` blocks of at most `max_length` tokens.

    Each block is (ids, units): units number the maskable units inside the block, -1 on [CLS]/[SEP].
    A text longer than a block is cut into block-sized pieces.
    """
    room = max_length - 2
    blocks: list[tuple[list[int], list[int]]] = []
    ids, units, next_unit = [cls_id], [-1], 0

    def flush():
        nonlocal ids, units, next_unit
        if len(ids) > 1:
            blocks.append((ids, units))
        ids, units, next_unit = [cls_id], [-1], 0

    for text_ids, text_units in encoded:
        for start in range(0, len(text_ids), room):
            piece, piece_units = text_ids[start : start + room], text_units[start : start + room]
            if len(ids) + len(piece) + 1 > max_length:
                flush()
            # Number the piece's units densely from next_unit, so a block's units stay below its length.
            dense = {u: next_unit + i for i, u in enumerate(dict.fromkeys(piece_units))}
            next_unit += len(dense)
            ids += [*piece, sep_id]
            units += [dense[u] for u in piece_units] + [-1]
    flush()
    return blocks


def collate(blocks, pad_id: int):
    """Pad a batch of blocks to its longest: ids, attention mask, and units (-1 where nothing is masked)."""
    import torch

    width = max(len(ids) for ids, _ in blocks)
    ids = torch.full((len(blocks), width), pad_id, dtype=torch.long)
    units = torch.full((len(blocks), width), -1, dtype=torch.long)
    for row, (block_ids, block_units) in enumerate(blocks):
        ids[row, : len(block_ids)] = torch.tensor(block_ids)
        units[row, : len(block_units)] = torch.tensor(block_units)
    return ids, (ids != pad_id).long(), units


def mask_batch(ids, units, *, mask_id: int, candidate_ids, mask_prob: float, generator):
    """Choose whole units with probability `mask_prob`; of their tokens 80% → [MASK], 10% → random, 10% kept.

    Returns the corrupted ids and the boolean mask of the positions to predict (never empty).
    """
    import torch

    rows, width = ids.shape
    unit_draw = torch.rand(rows * width, generator=generator)  # one draw per (row, unit)
    global_unit = torch.arange(rows).unsqueeze(1) * width + units.clamp(min=0)
    chosen = (unit_draw[global_unit] < mask_prob) & (units >= 0)
    if not chosen.any():
        first = (units >= 0).nonzero()[0]
        chosen[first[0], first[1]] = True
    action = torch.rand(rows, width, generator=generator)
    random_ids = candidate_ids[torch.randint(len(candidate_ids), (rows, width), generator=generator)]
    corrupted = ids.clone()
    corrupted[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    corrupted[swap] = random_ids[swap]
    return corrupted, chosen


def prepare_blocks(texts: list[str], out_dir: Path, config: PretrainConfig):
    """The vocabulary (of `texts`, or `config.init`'s), its tokenizer saved to `out_dir`, and the packed
    training blocks."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.init:
        tokenizer = load_tokenizer(config.init)
        tokenizer.save_pretrained(str(out_dir))
        word_list = Path(config.init) / "vocab.txt"   # a fast tokenizer saves tokenizer.json only; keep the
        if word_list.is_file():                        # checkpoint's plain word list beside it, as it had one
            shutil.copyfile(word_list, out_dir / "vocab.txt")
        vocab = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    else:
        vocab = char_vocab(texts, max_size=config.vocab_size, min_count=config.min_count)
        tokenizer = save_char_tokenizer(vocab, out_dir)
    blocks = pack_blocks(encode_texts(tokenizer, texts, whole_word=config.whole_word), config.max_length,
                         tokenizer.cls_token_id, tokenizer.sep_token_id)
    return vocab, tokenizer, blocks


def block_stats(blocks, tokenizer) -> dict:
    tokens = sum(len(ids) for ids, _ in blocks)
    unk = sum(ids.count(tokenizer.unk_token_id) for ids, _ in blocks)
    return {"vocab_size": len(tokenizer), "blocks": len(blocks), "tokens": tokens,
            "unk_rate": round(unk / tokens, 6) if tokens else 0.0}


# --- the loop -----------------------------------------------------------------------------------------


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one purpose (e.g. "step", 17), independent of every other purpose's."""
    key = json.dumps([seed, *parts]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def epoch_order(num_blocks: int, seed: int, epoch: int) -> list[int]:
    import torch

    generator = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
    return torch.randperm(num_blocks, generator=generator).tolist()


def _mlm_loss(model, ids, attention, corrupted, targets_mask):
    """Cross-entropy at the masked positions only, and how many of them the model got right."""
    import torch.nn.functional as F

    hidden = model.bert(input_ids=corrupted, attention_mask=attention).last_hidden_state
    logits = model.cls(hidden[targets_mask])
    targets = ids[targets_mask]
    return F.cross_entropy(logits, targets), int((logits.argmax(-1) == targets).sum())


def vectors_sha256(config: PretrainConfig) -> str | None:
    """The content identity of the word-vector file that starts the embeddings (None without one)."""
    from zhkd.shards import file_sha256

    return file_sha256(Path(config.char_vectors)) if config.char_vectors else None


def fingerprint(texts: list[str], config: PretrainConfig) -> str:
    """What makes a run this run: its settings, its texts, its word vectors and the weights it continues
    (computed before anything is written)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    start = weights_fingerprint(config.init) if config.init else None
    return hashlib.sha256(
        json.dumps([asdict(config), digest.hexdigest(), vectors_sha256(config), start]).encode()).hexdigest()


def continued_model(config: PretrainConfig):
    """`config.init`'s masked LM, which the loop trains further; one line when it is not a BERT MLM (the
    loss reads its encoder and its prediction head) or its positions are fewer than a block's tokens."""
    model = load_model("mlm", config.init)  # a head it lacks is named on stderr, never filled in silently
    if not (hasattr(model, "bert") and hasattr(model, "cls")):
        raise DistillError(f"--init {config.init}: {type(model).__name__} is not a BERT masked LM; "
                           "zhkd pretrain continues BertForMaskedLM checkpoints")
    if config.max_length > model.config.max_position_embeddings:
        raise DistillError(f"max length {config.max_length} exceeds --init's "
                           f"{model.config.max_position_embeddings} positions")
    return model


def _save_resume(out_dir: Path, model, optimizer, step: int, digest: str) -> None:
    """Weights, AdamW moments (safetensors) and the step: with per-step seeds, all a resumed run needs."""
    from safetensors.torch import save_file

    from zhkd.distill.train import _optimizer_tensors

    checkpoints = Checkpoints(out_dir)
    partial = checkpoints.begin()
    model.save_pretrained(str(partial), safe_serialization=True)
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(partial / "optimizer.safetensors"), metadata=meta)
    checkpoints.commit(partial, {"step": step, "fingerprint": digest})


def _load_resume(checkpoint: Path, model, optimizer) -> None:
    """Weights and AdamW moments of a checkpoint (its fingerprint already checked)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=False)
    model.tie_weights()
    moments: dict[int, dict] = {}
    with safe_open(str(checkpoint / "optimizer.safetensors"), framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
        for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            index, key = name.split(".", 1)
            moments.setdefault(int(index), {})[key] = f.get_tensor(name)
    optimizer.load_state_dict({"state": moments, "param_groups": groups})


def heldout_accuracy(model, tokenizer, texts: list[str], *, max_length: int = 128, batch_size: int = 32,
                     mask_prob: float = 0.15, seed: int = 0) -> dict:
    """Masked-character accuracy on texts the model did not train on, with masks fixed by `seed`.

    The texts are packed as in training and masked as in training, but every draw comes from `seed`, so
    the figure is the same for the same model on any machine: what a model card can quote.
    """
    import torch

    blocks = pack_blocks(encode_texts(tokenizer, texts, whole_word=False), max_length, tokenizer.cls_token_id,
                         tokenizer.sep_token_id)
    special = set(tokenizer.all_special_ids)
    candidates = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    masked = correct = 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(blocks), batch_size):
            ids, attention, units = collate(blocks[start : start + batch_size], tokenizer.pad_token_id)
            generator = torch.Generator().manual_seed(derive_seed(seed, "heldout", start))
            corrupted, targets = mask_batch(ids, units, mask_id=tokenizer.mask_token_id, candidate_ids=candidates,
                                            mask_prob=mask_prob, generator=generator)
            _, right = _mlm_loss(model, *(t.to(device) for t in (ids, attention, corrupted, targets)))
            masked += int(targets.sum())
            correct += right
    model.train(was_training)
    return {"texts": len(texts), "blocks": len(blocks), "masked": masked, "correct": correct,
            "accuracy": round(correct / masked, 5) if masked else None, "seed": seed}


# Above this mean cosine between the top layer's states of different characters, an encoder says nearly the
# same thing at every position: the collapse an MLM goes through early on, while it predicts only the commonest
# characters. On the demo's dev texts (bench/measurements/collapse.json): the demo's former 60-step `small` MLM
# 0.992, the same run to 200 steps 0.244, random weights 0.336, the embedded encoder 0.284. A sentiment
# teacher fine-tuned from that 60-step start stayed at chance (docs/evaluate.md).
COLLAPSED_SIMILARITY = 0.9


def state_similarity(model, tokenizer, texts: list[str], *, max_length: int = 128, batch_size: int = 32) -> float:
    """Mean cosine similarity between the top-layer states of every two real tokens of `texts`.

    Near 1 means the encoder's output hardly depends on its input (see `COLLAPSED_SIMILARITY`), which a
    held-out masked accuracy does not show: a collapsed MLM still scores by guessing common characters.
    Deterministic (no masking, dropout off); the mean over all pairs comes from the sum of unit vectors.
    """
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = None, 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(texts[start : start + batch_size], truncation=True, max_length=max_length,
                                padding=True, return_tensors="pt").to(device)
            inputs = {key: encoded[key] for key in ("input_ids", "attention_mask")}
            states = model.base_model(**inputs).last_hidden_state[encoded["attention_mask"].bool()]
            units = torch.nn.functional.normalize(states.double(), dim=-1)
            total = units.sum(0) if total is None else total + units.sum(0)
            count += len(units)
    model.train(was_training)
    if count < 2:
        raise DistillError("state similarity needs at least two tokens of text")
    return round(float((total @ total - count) / (count * (count - 1))), 5)


def pretrain_mlm(texts: Iterable[str], out_dir: str | Path, config: PretrainConfig = PretrainConfig(), *,
                 resume: bool = False, progress: bool = True, heldout: list[str] | None = None) -> Path:
    """Train a character MLM on `texts` and save it to `out_dir` as a Hugging Face checkpoint.

    `out_dir` then holds safetensors weights, config, tokenizer, `log.jsonl` (loss per `log_every`
    steps) and `summary.json` (settings, data figures, speed, and the masked accuracy on `heldout` texts
    when given), the trainer's layout. Returns `out_dir`.
    Without `resume` a run starts afresh (overwriting). With it, a run continues from its newest complete
    checkpoint, and returns at once when `out_dir` already holds this very run, complete; a checkpoint or
    run of other texts or settings is refused before anything is written.
    """
    import torch
    from tqdm import tqdm

    from zhkd.distill.students import build_model
    from zhkd.distill.train import lr_at, make_optimizer

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DistillError("no text to pre-train on")
    out_dir = Path(out_dir)
    run_fingerprint = fingerprint(texts, config)
    summary_path = out_dir / SUMMARY_FILE
    checkpoints = Checkpoints(out_dir)
    if resume and summary_path.is_file():
        if json.loads(summary_path.read_text("utf-8")).get("fingerprint") == run_fingerprint:
            return out_dir  # this very run is already complete
        raise DistillError(f"{out_dir} holds a pre-training of other input or settings; choose another output")
    latest = checkpoints.latest() if resume else None
    if latest is not None and latest[1].get("fingerprint") != run_fingerprint:
        raise DistillError(f"{latest[0]} was saved for other input or settings; rerun without --resume")
    summary_path.unlink(missing_ok=True)
    if latest is None:
        checkpoints.clear()
    vocab, tokenizer, blocks = prepare_blocks(texts, out_dir, config)
    steps_per_epoch = math.ceil(len(blocks) / config.batch_size)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = (continued_model(config) if config.init else
             build_model(config.shape, kind="mlm", vocab_size=len(vocab), pad_token_id=tokenizer.pad_token_id,
                         seed=config.seed))
    vectors = None
    if config.char_vectors:
        from zhkd.distill.wordvectors import init_embeddings

        vectors = init_embeddings(model, tokenizer, config.char_vectors, seed=config.seed)
    model = model.to(device).train()
    optimizer = make_optimizer(model, config)
    start = 0
    if latest is not None:
        _load_resume(latest[0], model, optimizer)
        start = int(latest[1]["step"])
    special = set(tokenizer.all_special_ids)
    candidates = torch.tensor([i for i in range(len(vocab)) if i not in special])

    log = (out_dir / LOG_FILE).open("a" if start else "w", encoding="utf-8")
    order, order_epoch = [], -1
    interval = {"loss": 0.0, "steps": 0, "masked": 0, "correct": 0}
    began = time.perf_counter()
    cuda_devices = [torch.device(device)] if device.startswith("cuda") else []
    # The loop seeds torch's global RNG (dropout draws from it) per step; fork it so the caller's is untouched.
    with torch.random.fork_rng(devices=cuda_devices), log, tqdm(
        total=total_steps, initial=start, desc="pretrain", unit="step", disable=not progress, dynamic_ncols=True
    ) as bar:
        for step in range(start, total_steps):
            epoch, position = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(len(blocks), config.seed, epoch), epoch
            batch = [blocks[i] for i in order[position * config.batch_size : (position + 1) * config.batch_size]]
            step_seed = derive_seed(config.seed, "step", step)
            torch.manual_seed(step_seed)
            ids, attention, units = collate(batch, tokenizer.pad_token_id)
            corrupted, targets = mask_batch(ids, units, mask_id=tokenizer.mask_token_id, candidate_ids=candidates,
                                            mask_prob=config.mask_prob,
                                            generator=torch.Generator().manual_seed(step_seed))
            loss, correct = _mlm_loss(model, *(t.to(device) for t in (ids, attention, corrupted, targets)))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            lr = lr_at(step, total_steps, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            interval["loss"] += loss.item()
            interval["steps"] += 1
            interval["masked"] += int(targets.sum())
            interval["correct"] += correct
            bar.update(1)
            done = step + 1
            if done % config.log_every == 0 or done == total_steps:
                mean_loss = interval["loss"] / interval["steps"]
                bar.set_postfix(loss=f"{mean_loss:.3f}")
                log.write(json.dumps({
                    "step": done, "epoch": round(done / steps_per_epoch, 4), "loss": round(mean_loss, 5),
                    "masked_accuracy": round(interval["correct"] / interval["masked"], 5),
                    "lr": lr, "elapsed_s": round(time.perf_counter() - began, 2),
                }) + "\n")
                log.flush()
                interval = {"loss": 0.0, "steps": 0, "masked": 0, "correct": 0}
            if config.save_every and done % config.save_every == 0 and done < total_steps:
                _save_resume(out_dir, model, optimizer, done, run_fingerprint)
    seconds = time.perf_counter() - began

    model.eval().to("cpu").save_pretrained(str(out_dir), safe_serialization=True)
    summary = {
        "char_vectors": vectors and {**vectors, "file_sha256": vectors_sha256(config)},
        "init": config.init and {"weights_sha256": weights_fingerprint(config.init),
                                 "layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size},
        "heldout": {**heldout_accuracy(model, tokenizer, heldout, max_length=config.max_length,
                                       mask_prob=config.mask_prob, seed=config.seed),
                    "state_similarity": state_similarity(model, tokenizer, heldout, max_length=config.max_length)}
                   if heldout else None,
        "config": asdict(config),
        "device": device,
        "texts": len(texts),
        **block_stats(blocks, tokenizer),
        "steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "resumed_at_step": start,
        "seconds": round(seconds, 2),
        "steps_per_s": round((total_steps - start) / seconds, 4) if seconds else None,
        "torch_threads": torch.get_num_threads(),
        "fingerprint": run_fingerprint,
    }
    write_atomic(summary_path, (json.dumps(summary, indent=1) + "\n").encode("utf-8"))
    checkpoints.clear()
    return out_dir
