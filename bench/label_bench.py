"""Teacher labelling throughput on CPU: zhkd's RunInference handler vs `transformers.pipeline`.

Both label the same N rows of the bundled sentiment corpus (train split, in stored order) with the
same bert-base-shaped random classifier and character tokenizer, saved to a temporary checkpoint and
loaded the way each contender loads it. Timed end to end from raw strings to raw logits, tokenisation
included, model loading excluded (both warm up on 16 rows first):

- zhkd: `TeacherTokenizer.encode` (one batched call), `plan_batches` (length-sorted, token budget)
  and `TeacherHandler.run_inference` per batch, exactly as the Beam pipeline runs them.
- pipeline: `pipeline("text-classification")(texts, truncation=True, function_to_apply="none",
  top_k=None)`, its default batch size; and, for reference, the same with `batch_size=64`.

The logits of both are compared (they must agree to 1e-3). Target (issue 4): zhkd >= 2x the default
pipeline's rows/s. Results go to bench/results/label_bench.json.

    python bench/label_bench.py [--rows 2000] [--shape bert-base] [--skip-batched-pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).parent / "results" / "label_bench.json"
LABELS = ["negative", "positive"]
MAX_LENGTH = 512


def make_teacher(shape, out_dir: Path, texts: list[str]) -> Path:
    """A random sentiment classifier of a shape (catalogue name or `Shape`), with a character
    tokenizer of the texts, saved as a checkpoint (the other bench scripts use it too)."""
    from zhkd.distill.students import build_model
    from zhkd.models import char_vocab, save_char_tokenizer

    vocab = char_vocab(texts, max_size=8000)
    tokenizer = save_char_tokenizer(vocab, out_dir)
    model = build_model(shape, kind="sequence", vocab_size=len(vocab), labels=LABELS,
                        pad_token_id=tokenizer.pad_token_id, seed=0)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def label_with_zhkd(teacher: Path, texts: list[str], batch_tokens: int, max_rows: int):
    import numpy as np

    from zhkd.pipelines.teacher import TeacherHandler, TeacherTokenizer, plan_batches

    tokenizer = TeacherTokenizer(str(teacher), "classification", MAX_LENGTH)
    handler = TeacherHandler(str(teacher), "classification", pad_token_id=tokenizer.tokenizer.pad_token_id,
                             device="cpu")
    loaded = handler.load_model()

    def run(batch_texts: list[str]) -> np.ndarray:
        rows = [{"id": f"{i:06d}", "text": t} for i, t in enumerate(batch_texts)]
        tokenizer.encode(rows)
        logits = {}
        for batch in plan_batches(rows, batch_tokens=batch_tokens, max_rows=max_rows):
            for result in handler.run_inference(batch, loaded):
                logits[result.example["id"]] = result.inference
        return np.stack([logits[r["id"]] for r in rows])

    run(texts[:16])
    start = time.perf_counter()
    out = run(texts)
    return out, time.perf_counter() - start


def label_with_pipeline(teacher: Path, texts: list[str], batch_size: int | None):
    import numpy as np
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(teacher), tokenizer=str(teacher), device=-1)
    kwargs = {"truncation": True, "max_length": MAX_LENGTH, "function_to_apply": "none", "top_k": None}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    pipe(texts[:16], **kwargs)
    start = time.perf_counter()
    scored = pipe(texts, **kwargs)
    elapsed = time.perf_counter() - start
    index = {name: i for i, name in enumerate(LABELS)}
    logits = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
    for i, row in enumerate(scored):
        for entry in row:
            logits[i, index[entry["label"]]] = entry["score"]
    return logits, elapsed


def main() -> None:
    import numpy as np
    import torch

    from zhkd.pipelines.build_config import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_BATCH_ROWS
    from zhkd.pipelines.corpora import load_corpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--shape", default="bert-base")
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS)
    parser.add_argument("--max-batch-rows", type=int, default=DEFAULT_MAX_BATCH_ROWS)
    parser.add_argument("--skip-batched-pipeline", action="store_true")
    args = parser.parse_args()

    corpus = [r["text"] for r in load_corpus("chnsenti", "train")]
    texts = corpus[: args.rows]
    with tempfile.TemporaryDirectory(prefix="zhkd-label-bench-") as tmp:
        teacher = make_teacher(args.shape, Path(tmp), corpus)
        ours, ours_s = label_with_zhkd(teacher, texts, args.batch_tokens, args.max_batch_rows)
        print(f"zhkd handler:        {len(texts) / ours_s:8.1f} rows/s ({ours_s:.1f} s)", flush=True)
        theirs, theirs_s = label_with_pipeline(teacher, texts, None)
        print(f"pipeline (default):  {len(texts) / theirs_s:8.1f} rows/s ({theirs_s:.1f} s)", flush=True)
        batched_s = None
        if not args.skip_batched_pipeline:
            batched, batched_s = label_with_pipeline(teacher, texts, 64)
            print(f"pipeline (batch 64): {len(texts) / batched_s:8.1f} rows/s ({batched_s:.1f} s)", flush=True)
    max_diff = float(np.abs(ours - theirs).max())
    ratio = theirs_s / ours_s
    result = {
        "bench": "label_bench", "machine": f"{platform.processor() or platform.machine()}, "
                                           f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "device": "cpu", "shape": args.shape, "rows": len(texts),
        "mean_chars": sum(map(len, texts)) / len(texts),
        "zhkd_rows_per_s": len(texts) / ours_s, "zhkd_s": ours_s,
        "pipeline_rows_per_s": len(texts) / theirs_s, "pipeline_s": theirs_s,
        "pipeline_batch64_rows_per_s": None if batched_s is None else len(texts) / batched_s,
        "ratio_vs_pipeline": ratio, "target_ratio": 2.0, "target_met": ratio >= 2.0,
        "ratio_vs_pipeline_batch64": None if batched_s is None else batched_s / ours_s,
        "max_abs_logit_diff": max_diff,
    }
    if max_diff > 1e-3:
        raise SystemExit(f"the contenders disagree: max logit difference {max_diff}")
    print(f"zhkd / pipeline = {ratio:.2f}x (target >= 2x: {'met' if ratio >= 2 else 'missed'}); "
          f"max |logit diff| {max_diff:.2e}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
