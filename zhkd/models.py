"""Hugging Face checkpoints: safe loading, character vocabularies, and fingerprints.

Every stage takes a local directory or a hub id. Weights load through safetensors only and remote
code never runs. Nothing here downloads unless the user names a hub id.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from zhkd.errors import ZhkdError
from zhkd.shards import file_sha256


class ModelError(ZhkdError):
    """A checkpoint or tokenizer that cannot be loaded, or a model kind that does not exist."""


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MODEL_KINDS = ("sequence", "token", "mlm")


def char_vocab(texts: Iterable[str], *, max_size: int | None = None, min_count: int = 1) -> list[str]:
    """Special tokens, then characters by descending frequency (ties by code point), whitespace excluded."""
    counts = Counter(c for text in texts for c in text if not c.isspace())
    chars = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    if max_size is not None:
        chars = chars[: max(0, max_size - len(SPECIAL_TOKENS))]
    return [*SPECIAL_TOKENS, *chars]


def save_char_tokenizer(vocab: list[str], out_dir: Path):
    """A BERT tokenizer that splits Chinese into characters, saved as a `save_pretrained` folder."""
    from transformers import BertTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    # BertTokenizer(vocab=...), not BertTokenizerFast(vocab_file=...), which ignores the file in transformers 5.
    tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=False, tokenize_chinese_chars=True)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def load_tokenizer(name_or_path: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a tokenizer from {name_or_path}: {err}") from err


def load_model(kind: str, name_or_path: str | Path, *, announce: bool = False, **kwargs):
    """A sequence-classification, token-classification or masked-LM model, from safetensors only.

    With `announce`, one line on stderr says what was initialised afresh (a task head on an MLM) and what
    was left unused: for starting a model from another kind of checkpoint. Elsewhere a checkpoint of the
    wrong kind is caught by its labels, and nothing is printed.
    """
    import transformers

    auto = {
        "sequence": transformers.AutoModelForSequenceClassification,
        "token": transformers.AutoModelForTokenClassification,
        "mlm": transformers.AutoModelForMaskedLM,
    }
    if kind not in auto:
        raise ModelError(f"unknown model kind {kind!r}; one of {', '.join(MODEL_KINDS)}")
    # transformers logs a table of every tensor it did not load or did not use (an MLM's head when a
    # classifier starts from it); one line naming the parts is what a user needs, so the table is muted.
    # (A filter, not a raised level: transformers runs extra checks when that logger's level is WARNING+.)
    report_logger = transformers.utils.logging.get_logger("transformers.modeling_utils")
    report_logger.addFilter(_mute_load_report)
    try:
        model, info = auto[kind].from_pretrained(
            str(name_or_path), use_safetensors=True, trust_remote_code=False, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a {kind} model from {name_or_path}: {err}") from err
    finally:
        report_logger.removeFilter(_mute_load_report)
    line = loading_line(name_or_path, info)
    if line and announce:
        print(line, file=sys.stderr)
    return model


def _mute_load_report(record) -> bool:
    return "LOAD REPORT" not in str(record.msg)


def _modules(keys) -> list[str]:
    """Tensor names grouped by the module that holds them (`bert.pooler.dense.bias` → `bert.pooler`)."""
    groups = []
    for key in keys:
        name = key if isinstance(key, str) else key[0]  # mismatched keys come as (name, shape, shape)
        parts = name.split(".")
        module = ".".join(parts[:2]) if parts[0] in ("bert", "cls") and len(parts) > 2 else parts[0]
        if module not in groups:
            groups.append(module)
    return groups


def loading_line(name_or_path: str | Path, info: dict) -> str | None:
    """One line saying what a load initialised afresh and what it left unused; None when it took everything."""
    fresh = _modules([*info.get("missing_keys", []), *info.get("mismatched_keys", [])])
    unused = _modules(info.get("unexpected_keys", []))
    if not fresh and not unused:
        return None
    parts = []
    if fresh:
        parts.append(f"initialised afresh: {', '.join(fresh)}")
    if unused:
        parts.append(f"not used from the checkpoint: {', '.join(unused)}")
    return f"zhkd: loaded {name_or_path}; " + "; ".join(parts)


def model_labels(model) -> list[str]:
    """A loaded checkpoint's label names in id order."""
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def tokenizer_fingerprint(tokenizer) -> str:
    """Same vocabulary and normalisation ⇒ same token ids: that is what the fingerprint captures."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    identity = {
        "class": type(tokenizer).__name__,
        "vocab": vocab,
        "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
    }
    return hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode("utf-8")).hexdigest()


def weights_fingerprint(model_dir: str | Path) -> str:
    """sha256 over the checkpoint's safetensors files (a hub id is fingerprinted by name only)."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
    if not files:
        return "hub:" + hashlib.sha256(str(model_dir).encode("utf-8")).hexdigest()
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256("".join(file_sha256(p) for p in files).encode()).hexdigest()
