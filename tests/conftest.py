"""Shared fixtures: tiny random Hugging Face checkpoints built in temporary directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SENTIMENT_LABELS = ["negative", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
TYPE_LABELS = ["LOC", "ORG", "PER"]  # the multilabel corpus pd98-types: entity types a sentence names


def corpus_chars() -> list[str]:
    """Characters of the bundled corpora's dev splits: enough that tiny models see real text."""
    from zhkd.pipelines.corpora import load_corpus

    texts = [r["text"] for r in load_corpus("chnsenti", "dev")]
    texts += ["".join(r["tokens"]) for r in load_corpus("pd98-ner", "dev")]
    return texts


def tiny_checkpoint(out_dir: Path, kind: str, *, labels: list[str] | None = None, seed: int = 0,
                    hidden: int = 32, layers: int = 2, problem_type: str | None = None) -> Path:
    """A random BERT of the given kind ("sequence", "token" or "mlm") with a character tokenizer;
    `problem_type="multi_label_classification"` makes a multilabel head."""
    from zhkd.distill.students import Shape, build_model
    from zhkd.models import char_vocab, save_char_tokenizer

    vocab = char_vocab(corpus_chars(), max_size=3000)
    tokenizer = save_char_tokenizer(vocab, out_dir)
    shape = Shape(f"tiny-{hidden}x{layers}", layers, hidden, 2, hidden * 2)
    model = build_model(shape, kind=kind, vocab_size=len(vocab), labels=labels,
                        pad_token_id=tokenizer.pad_token_id, seed=seed, problem_type=problem_type)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return Path(out_dir)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-classifier"), "sequence", labels=SENTIMENT_LABELS)


@pytest.fixture(scope="session")
def tiny_tagger(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-tagger"), "token", labels=NER_LABELS)


@pytest.fixture(scope="session")
def tiny_multilabel(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-multilabel"), "sequence", labels=TYPE_LABELS,
                           problem_type="multi_label_classification")


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-mlm"), "mlm")


def run_zhkd(*args: str, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """The installed `zhkd` console script of this environment, as a user runs it."""
    zhkd = Path(sys.executable).with_name("zhkd")
    return subprocess.run([str(zhkd), *map(str, args)], capture_output=True, text=True, check=check, **kwargs)


def write_jsonl(path: Path, rows) -> Path:
    """Rows as a UTF-8 JSONL file (Chinese kept readable)."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine they stall: use one, then restore."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
