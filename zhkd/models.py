"""Hugging Face checkpoints: safe loading, character vocabularies, and fingerprints.

Every stage takes a local directory or a hub id. Weights load through safetensors only and remote
code never runs. Nothing here downloads unless the user names a hub id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from zhkd.errors import ZhkdError
from zhkd.shards import file_sha256
from zhkd.tasks import MULTI_LABEL_PROBLEM, get_task


class ModelError(ZhkdError):
    """A checkpoint or tokenizer that cannot be loaded, or a model kind that does not exist."""


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MODEL_KINDS = ("sequence", "token", "mlm")

# The character encoder zhkd ships, the start `zhkd finetune` and `make demo` use when given none: no Chinese
# BERT installs offline, so it is `zhkd pretrain` on the bundled corpora (how, its figures and its terms:
# data_cards/zhkd-char-encoder.md; remade by bench/encoder_card.py). A masked LM, so it also serves the
# augmentation's `mlm` operator.
EMBEDDED_ENCODER = Path(__file__).with_name("encoder")


def embedded_encoder() -> Path:
    """The shipped encoder's checkpoint directory; one line if this install lacks it."""
    if not (EMBEDDED_ENCODER / "model.safetensors").is_file():
        raise ModelError(f"{EMBEDDED_ENCODER}: the embedded encoder is missing from this install; reinstall zhkd, "
                         "or name a checkpoint (--init, --mlm)")
    return EMBEDDED_ENCODER


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


def hub_reference(name_or_path: str | Path) -> tuple[str, dict]:
    """A local path as given (`~` expanded); a hub id written `org/name@revision` split into the id and
    `revision=`.

    The revision (a commit, tag or branch) pins which weights a hub teacher is; it is part of the
    teacher's identity in a dataset's configuration hash (see `weights_fingerprint`). A reference that
    can only be a path (absolute, `./`, `../`, `~`, or more than one `/`) and names no directory is a
    ModelError here: handed on, transformers would answer that it is not a valid repo id.
    """
    text = str(name_or_path)
    if "://" not in text and (text.startswith(("/", "./", "../", "~")) or text.count("/") > 1):
        local = Path(text).expanduser()
        if not local.is_dir():
            raise ModelError(f"{text}: no such checkpoint directory")
        return str(local), {}
    if "@" in text and "://" not in text and not Path(text).exists():
        repo, _, revision = text.rpartition("@")
        if repo and revision:
            return repo, {"revision": revision}
    return text, {}


def load_tokenizer(name_or_path: str | Path):
    from transformers import AutoTokenizer

    name, revision = hub_reference(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False, **revision)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a tokenizer from {name_or_path}: {err}") from err


class _HeldLoadReport(logging.Filter):
    """Holds back transformers' load report: a table of every weight the checkpoint lacked or had
    spare, which buries a newcomer's console each time a task head is put on a pre-trained encoder.
    Other warnings pass; the held report is let through after all if the load fails."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.held.append(record)
            return False
        return True


def _modules(keys) -> str:
    """Parameter names grouped by module: `classifier (bias, weight), bert.pooler.dense (bias, weight)`."""
    by_module: dict[str, list[str]] = {}
    for key in sorted(keys):
        module, _, leaf = key.rpartition(".")
        by_module.setdefault(module or key, []).append(leaf)
    return ", ".join(f"{module} ({', '.join(leaves)})" for module, leaves in by_module.items())


def loading_summary(kind: str, name_or_path: str | Path, info: dict) -> str | None:
    """One line naming what a load initialised afresh (and what it left unused), or None when the
    checkpoint fitted the model exactly."""
    fresh = set(info.get("missing_keys", ())) | {key for key, *_ in info.get("mismatched_keys", ())}
    unused = sorted(info.get("unexpected_keys", ()))
    if not fresh and not unused:
        return None
    parts = [f"freshly initialised {_modules(fresh)}"] if fresh else []
    if unused:
        heads = sorted({".".join(key.split(".")[:2]) for key in unused})
        parts.append(f"not used: {len(unused)} checkpoint weights under {', '.join(heads)}")
    return f"{kind} model from {name_or_path}: " + "; ".join(parts)


def load_model(kind: str, name_or_path: str | Path, *, report: Callable[[str], None] | None = None, **kwargs):
    """A sequence-classification, token-classification or masked-LM model, from safetensors only.

    When the checkpoint does not fit the model exactly (an MLM given a task head), `report` receives
    one line naming what was freshly initialised (default: printed to stderr), in place of
    transformers' table of every weight.
    """
    import transformers

    auto = {
        "sequence": transformers.AutoModelForSequenceClassification,
        "token": transformers.AutoModelForTokenClassification,
        "mlm": transformers.AutoModelForMaskedLM,
    }
    if kind not in auto:
        raise ModelError(f"unknown model kind {kind!r}; one of {', '.join(MODEL_KINDS)}")
    name, revision = hub_reference(name_or_path)
    logger = logging.getLogger("transformers.modeling_utils")
    held = _HeldLoadReport()
    logger.addFilter(held)
    try:
        model, info = auto[kind].from_pretrained(
            name, use_safetensors=True, trust_remote_code=False, output_loading_info=True, **revision, **kwargs
        )
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a {kind} model from {name_or_path}: {err}") from err
    except BaseException:
        logger.removeFilter(held)
        for record in held.held:  # the table explains the failure
            logger.handle(record)
        raise
    finally:
        logger.removeFilter(held)
    line = loading_summary(kind, name_or_path, info)
    if line:
        (report or (lambda text: print(text, file=sys.stderr, flush=True)))(line)
    return model


def head_mismatch(config, task: str) -> str | None:
    """Why a checkpoint's head does not fit the task, or None when it does. A token classifier scores
    per token and a sequence classifier per row; a multi-label head (one sigmoid per label, transformers'
    `problem_type="multi_label_classification"`) fits the multilabel task and only it, since its logits
    mean something else than a softmax's. Callers raise their own error with the reason."""
    spec = get_task(task)
    wrong = "SequenceClassification" if spec.per_token else "TokenClassification"
    architectures = getattr(config, "architectures", None) or []
    if any(wrong in arch for arch in architectures):
        return f"is a {architectures[0]}, the {task} task needs a {spec.model_kind}-classification checkpoint"
    if (getattr(config, "problem_type", None) == MULTI_LABEL_PROBLEM) != spec.multilabel:
        if spec.multilabel:
            return (f"is not a multi-label classifier (no problem_type {MULTI_LABEL_PROBLEM!r} in its "
                    "config); make one with zhkd finetune --task multilabel")
        return (f"is a multi-label classifier (problem_type {MULTI_LABEL_PROBLEM!r}); the {task} task needs "
                "one label per row")
    return None


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


def hub_commit(repo: str, revision: str | None) -> str | None:
    """The commit a hub revision (default `main`) points at in the local hub cache, else the revision given."""
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        return ref.read_text("utf-8").strip() or revision
    except OSError:
        return revision


def weights_fingerprint(model_dir: str | Path) -> str:
    """sha256 over a local checkpoint's safetensors files; a hub id by its name and commit (`org/name@rev`
    pins it; without one, the commit the cache holds for `main`), so a new upload is a new teacher."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
    if not files:
        repo, revision = hub_reference(model_dir)
        identity = f"{repo}@{hub_commit(repo, revision.get('revision')) or 'unpinned'}"
        return "hub:" + hashlib.sha256(identity.encode("utf-8")).hexdigest()
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256("".join(file_sha256(p) for p in files).encode()).hexdigest()
