"""Ship a finished `zhkd pretrain` run as zhkd's embedded encoder, and write its card's figures.

    python bench/encoder_card.py --run RUN_DIR \
        --input pipelines/data/chnsenti.train.jsonl.gz,pipelines/data/pd98-ner.train.jsonl.gz \
        --heldout pipelines/data/chnsenti.dev.jsonl.gz,pipelines/data/pd98-ner.dev.jsonl.gz

The run's inputs are read again and its fingerprint recomputed, so the command the card prints is the
one that made these weights, not a recollection of it. The files a checkpoint needs (weights, config,
tokenizer) and the run's `summary.json` and `log.jsonl` are copied into `zhkd/encoder/` (a new version is a
new commit: every version stays in the history; optimiser state never ships). Then the figures are
measured and rendered between the markers of `data_cards/zhkd-char-encoder.md`:

- size, sha256, shape and vocabulary of the weights; the corpus figures and speed from `summary.json`;
- masked-character accuracy on the held-out texts (fixed masks, `zhkd.distill.pretrain.heldout_accuracy`);
- the top layer's state similarity on them (`state_similarity`: near 1 is a collapsed MLM);
- probes: one masked character in each of a few held-out sentences, with the encoder's top predictions,
  kept in `zhkd/encoder/probes.json` for the tests to check against the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
CARD = ROOT / "data_cards" / "zhkd-char-encoder.md"
START, END = "<!-- encoder-card:start -->", "<!-- encoder-card:end -->"
SHIPPED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
           "summary.json", "log.jsonl")
PROBES_FILE = "probes.json"
PROBES_PER_FILE = 4  # held-out sentences probed from each --heldout file
TOP_K = 3


def is_han(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


def probe_sentences(heldout: list[str]) -> list[tuple[str, int]]:
    """(text, position of the masked character): the first sentences of each held-out file of 12-60
    characters, masked at the first Chinese character from the middle on. Fixed by the files alone."""
    from zhkd.distill.pretrain import read_texts

    chosen = []
    for path in heldout:
        found = 0
        for text in read_texts([path]):
            text = text.replace(" ", "")
            if not 12 <= len(text) <= 60:
                continue
            position = next((i for i in range(len(text) // 2, len(text)) if is_han(text[i])), None)
            if position is None:
                continue
            chosen.append((text, position))
            found += 1
            if found == PROBES_PER_FILE:
                break
    return chosen


def predict(model, tokenizer, text: str, position: int) -> list[str]:
    """The encoder's TOP_K characters for `text` with its character at `position` masked."""
    import torch

    chars = list(text)
    chars[position] = tokenizer.mask_token
    encoded = tokenizer(" ".join(chars), return_tensors="pt")
    where = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0])
    with torch.inference_mode():
        logits = model(**encoded).logits[0, where]
        logits[torch.tensor(tokenizer.all_special_ids)] = float("-inf")
        return tokenizer.convert_ids_to_tokens(logits.topk(TOP_K).indices.tolist())


def measure_probes(model, tokenizer, sentences: list[tuple[str, int]]) -> list[dict]:
    return [{"text": text, "position": position, "masked": text[position],
             "predicted": predict(model, tokenizer, text, position)} for text, position in sentences]


def command_of(config: dict, inputs: str, heldout: str) -> str:
    from zhkd.distill.pretrain import PretrainConfig

    default = PretrainConfig()
    flags = [f"--input {inputs}", f"--heldout {heldout}", "--output RUN_DIR"]
    for key, value in config.items():
        if key == "char_vectors" or value == getattr(default, key) and key != "shape":
            continue
        flags.append(f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}"))
    return "zhkd pretrain " + " ".join(flags)


def card_block(encoder: Path, model, summary: dict, probes: list[dict], similarity: float, command: str) -> str:
    from benchlib import cpu_model, git_commit

    from zhkd.shards import file_sha256

    weights = encoder / "model.safetensors"
    config = json.loads((encoder / "config.json").read_text("utf-8"))
    parameters = sum(p.numel() for p in model.parameters())
    heldout = summary["heldout"]
    lines = [
        START,
        "| figure | value |",
        "|---|---|",
        f"| file | `zhkd/encoder/model.safetensors`, {weights.stat().st_size / 2**20:.1f} MiB, "
        f"sha256 `{file_sha256(weights)}` |",
        f"| shape | {config['num_hidden_layers']} layers × {config['hidden_size']} hidden, "
        f"{config['num_attention_heads']} heads, {config['intermediate_size']} FFN; {parameters:,} parameters |",
        f"| vocabulary | {summary['vocab_size']:,} characters and special tokens (`[UNK]` rate "
        f"{summary['unk_rate']:.2%} of the training tokens) |",
        f"| training text | {summary['texts']:,} texts, {summary['tokens']:,} tokens in {summary['blocks']:,} "
        f"blocks of ≤ {summary['config']['max_length']} |",
        f"| steps | {summary['steps']:,} of batch {summary['config']['batch_size']} "
        f"({summary['steps'] / summary['steps_per_epoch']:.1f} epochs), seed {summary['config']['seed']} |",
        f"| device | {summary['device']}, {summary['torch_threads']} torch thread(s); "
        f"{summary['seconds'] / 3600:.2f} hours" + (f" since the resume at step {summary['resumed_at_step']:,}"
                                                   if summary["resumed_at_step"] else "") + " |",
        f"| held-out masked accuracy | {heldout['accuracy']:.4f} ({heldout['correct']:,} of {heldout['masked']:,} "
        f"masked characters in {heldout['texts']:,} texts, masks fixed by seed {heldout['seed']}) |",
        f"| held-out state similarity | {similarity:.3f} (mean cosine of the top layer's states; a collapsed MLM "
        "is near 1) |",
        "",
        f"Command: `{command}`",
        "",
        f"Card made on {cpu_model()} ({os.cpu_count()} CPUs), Python {platform.python_version()}, commit "
        f"{git_commit()}, by `python bench/encoder_card.py`.",
        "",
        f"Probes (held-out sentences, one character masked; the encoder's top {TOP_K}):",
        "",
        "| sentence | masked | predicted |",
        "|---|---|---|",
    ]
    for probe in probes:
        shown = probe["text"][: probe["position"]] + "[MASK]" + probe["text"][probe["position"] + 1 :]
        lines.append(f"| {shown} | {probe['masked']} | {' '.join(probe['predicted'])} |")
    lines.append(END)
    return "\n".join(lines)


def write_card(block: str) -> None:
    text = CARD.read_text("utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    CARD.write_text(head + block + tail, encoding="utf-8")


def ship(run: Path, inputs: str, heldout: str) -> None:
    from zhkd.distill.pretrain import PretrainConfig, fingerprint, read_texts, state_similarity
    from zhkd.models import EMBEDDED_ENCODER, load_model, load_tokenizer

    summary = json.loads((run / "summary.json").read_text("utf-8"))
    config = PretrainConfig(**summary["config"])
    if fingerprint(list(read_texts(inputs.split(","))), config) != summary["fingerprint"]:
        sys.exit(f"{run}: its fingerprint does not match --input and the settings in its summary.json")
    if not summary.get("heldout"):
        sys.exit(f"{run}: no held-out figures in summary.json (pre-train with --heldout)")
    EMBEDDED_ENCODER.mkdir(exist_ok=True)
    for name in SHIPPED:  # copied aside, then renamed in: a process reading the weights (mapped) keeps its copy
        partial = EMBEDDED_ENCODER / f".{name}.partial"
        shutil.copyfile(run / name, partial)
        os.replace(partial, EMBEDDED_ENCODER / name)
    heldout_paths = heldout.split(",")
    model, tokenizer = load_model("mlm", EMBEDDED_ENCODER).eval(), load_tokenizer(EMBEDDED_ENCODER)
    probes = measure_probes(model, tokenizer, probe_sentences(heldout_paths))
    (EMBEDDED_ENCODER / PROBES_FILE).write_text(json.dumps(probes, ensure_ascii=False, indent=1) + "\n", "utf-8")
    similarity = state_similarity(model, tokenizer, list(read_texts(heldout_paths)),
                                  max_length=summary["config"]["max_length"])
    write_card(card_block(EMBEDDED_ENCODER, model, summary, probes, similarity,
                          command_of(summary["config"], inputs, heldout)))
    print(f"shipped {run} as {EMBEDDED_ENCODER}; card: {CARD}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished zhkd pretrain output directory")
    parser.add_argument("--input", required=True, help="the run's --input, as given to it")
    parser.add_argument("--heldout", required=True, help="the run's --heldout, as given to it")
    args = parser.parse_args()
    ship(args.run, args.input, args.heldout)


if __name__ == "__main__":
    main()
