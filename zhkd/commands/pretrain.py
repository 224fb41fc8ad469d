"""`zhkd pretrain`: a small character masked-language model from text lines or JSONL rows."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zhkd.distill.errors import DistillError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = _defaults()
    parser.add_argument("--input", required=True,
                        help="comma-separated files: plain text (one text per line) or JSONL rows with "
                             "text / text_pair / tokens (.gz read as gzip)")
    parser.add_argument("--output", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--shape", default=None, help=f"catalogue shape (default: {defaults.shape})")
    parser.add_argument("--init",
                        help="continue this BERT masked LM (directory or hub id; its weights and tokenizer) "
                             "instead of starting a new model, e.g. zhkd's embedded encoder: "
                             f"{_embedded()} (default: a new --shape model)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="keep the most frequent characters, special tokens included (default: all)")
    parser.add_argument("--min-count", type=int, default=defaults.min_count,
                        help="rarer characters become [UNK] (default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=defaults.max_length,
                        help="tokens per packed block (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=defaults.epochs, help="(default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (overrides epochs)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=defaults.warmup,
                        help="fraction of the steps warming the learning rate up (default: %(default)s)")
    parser.add_argument("--mask-prob", type=float, default=defaults.mask_prob, help="(default: %(default)s)")
    parser.add_argument("--whole-word", action="store_true",
                        help="mask whole jieba words instead of single characters")
    parser.add_argument("--char-vectors",
                        help="start the character embeddings from these word vectors (.safetensors written by "
                             "python -m zhkd.distill.wordvectors)")
    parser.add_argument("--heldout",
                        help="comma-separated files of texts not trained on: their masked accuracy (fixed masks) "
                             "goes into summary.json")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="(default: %(default)s)")
    parser.add_argument("--log-every", type=int, default=defaults.log_every, help="(default: %(default)s)")
    parser.add_argument("--save-every", type=int, default=defaults.save_every,
                        help="steps between resume checkpoints, 0 for none (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last resume checkpoint in --output (same input and settings)")


def _embedded() -> str:
    from zhkd.models import EMBEDDED_ENCODER

    return str(EMBEDDED_ENCODER)


def _defaults():
    from zhkd.distill.pretrain import PretrainConfig

    return PretrainConfig()


def run(args: argparse.Namespace) -> int:
    from zhkd.distill.pretrain import SUMMARY_FILE, PretrainConfig, fingerprint, pretrain_mlm, read_texts
    from zhkd.outputs import claim_run, refuse_inputs

    paths = [p.strip() for p in args.input.split(",") if p.strip()]
    heldout_paths = [p.strip() for p in (args.heldout or "").split(",") if p.strip()]
    if not paths:
        raise DistillError("--input names no file")
    if args.init and args.shape:
        raise DistillError("--shape and --init exclude each other: a continued model keeps its own shape")
    config = PretrainConfig(
        shape=args.shape or _defaults().shape, init=args.init, vocab_size=args.vocab_size,
        min_count=args.min_count, max_length=args.max_length,
        batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
        warmup=args.warmup, mask_prob=args.mask_prob, whole_word=args.whole_word, seed=args.seed,
        char_vectors=args.char_vectors,
        log_every=args.log_every, save_every=args.save_every, device=args.device,
    )
    refuse_inputs(args.output, [*paths, *heldout_paths, args.char_vectors, args.init], directory=True)
    counts: dict[str, int] = {}
    texts = list(read_texts(paths, counts))  # every input read (and refused, if it must be) before any write
    if not texts:
        raise DistillError(f"no text to pre-train on in {', '.join(paths)}")
    if counts["dropped"]:
        print(f"pretrain: {counts['dropped']} JSONL rows had no text, text_pair or tokens and were skipped",
              file=sys.stderr)
    heldout = list(read_texts(heldout_paths)) if heldout_paths else None
    settings = {"fingerprint": fingerprint(texts, config), "heldout": heldout and fingerprint(heldout, config)}
    claim = claim_run(args.output, "pretrain", settings, resume=args.resume)
    if claim is None:
        print(f"{args.output}: already complete", file=sys.stderr)
    else:
        with claim:
            pretrain_mlm(texts, args.output, config, resume=args.resume, heldout=heldout)
    summary = json.loads((args.output / SUMMARY_FILE).read_text(encoding="utf-8"))
    held = summary.get("heldout")
    model = f"{args.init} further" if args.init else f"a {config.shape} MLM"
    print(f"pre-trained {model} on {summary['texts']:,} texts ({summary['blocks']:,} blocks, "
          f"vocabulary {summary['vocab_size']:,}): {summary['steps']} steps in {summary['seconds']:.0f} s "
          f"({summary['steps_per_s']} steps/s)"
          + (f", held-out masked accuracy {held['accuracy']}" if held else "") + f" -> {args.output}")
    return 0
