"""One-shot GPU labelling bench: a bert-base-shaped teacher labels N raw sentences end to end.

For a machine with a GPU (target, issue 4: >= 20,000 rows/s on an H200, where `pipeline()` does
about 2,500). Sentences come from the bundled corpora (reviews and People's Daily, cut at 。！？；,
8-128 characters, cycled to N). Timed from raw strings to raw logits on the host, tokenisation
included, model loading excluded:

- zhkd: `TeacherTokenizer.encode` in chunks, `plan_batches` (length-sorted, token budget) and
  `TeacherHandler.run_inference` (bf16 on CUDA), as the Beam pipeline runs them;
- pipeline: `pipeline("text-classification", dtype=bf16 on CUDA)` on a subset of the same sentences,
  with its default batch size and with `--pipeline-batch`.

Writes bench/results/gpu_label.json with the device name. On a CPU-only machine it runs too (for a
smoke test: `--shape mini --rows 2000 --pipeline-rows 200`), and says so.

    python bench/gpu_label.py [--rows 100000] [--shape bert-base] [--batch-tokens 65536]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from benchlib import RESULTS, meta, summary_row, write_result  # noqa: E402
from label_bench import make_teacher  # noqa: E402

MAX_LENGTH = 512
CHUNK = 8192


def sentences(n: int) -> list[str]:
    """N sentences of 8-128 characters from the bundled corpora, cycled (duplicates only add load)."""
    from zhkd.pipelines.corpora import load_corpus

    texts = [r["text"] for r in load_corpus("chnsenti", "train")]
    texts += ["".join(r["tokens"]) for r in load_corpus("pd98-ner", "train")]
    pool = [s for t in texts for s in re.split(r"(?<=[。！？；])", t) if 8 <= len(s) <= 128]
    return [pool[i % len(pool)] for i in range(n)]


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def label_with_zhkd(teacher: Path, texts: list[str], device: str, batch_tokens: int, max_rows: int) -> dict:
    from zhkd.pipelines.teacher import TeacherHandler, TeacherTokenizer, plan_batches

    tokenizer = TeacherTokenizer(str(teacher), "classification", MAX_LENGTH)
    handler = TeacherHandler(str(teacher), "classification", pad_token_id=tokenizer.tokenizer.pad_token_id,
                             device=device)
    loaded = handler.load_model()

    def run(batch_texts: list[str]) -> tuple[int, float]:
        rows = [{"id": f"{i:07d}", "text": t} for i, t in enumerate(batch_texts)]
        started = time.perf_counter()
        for start in range(0, len(rows), CHUNK):
            tokenizer.encode(rows[start:start + CHUNK])
        tokenised = time.perf_counter() - started
        labelled = 0
        for batch in plan_batches(rows, batch_tokens=batch_tokens, max_rows=max_rows):
            labelled += len(handler.run_inference(batch, loaded))  # logits come back to the host per batch
        sync(device)
        return labelled, tokenised

    run(texts[:2048])
    sync(device)
    start = time.perf_counter()
    labelled, tokenised = run(texts)
    elapsed = time.perf_counter() - start
    assert labelled == len(texts)
    return {"rows": len(texts), "seconds": elapsed, "rows_per_s": len(texts) / elapsed,
            "tokenise_seconds": tokenised, "batch_tokens": batch_tokens, "max_batch_rows": max_rows}


def label_with_pipeline(teacher: Path, texts: list[str], device: str, batch_size: int | None) -> dict:
    import torch
    from transformers import pipeline

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    pipe = pipeline("text-classification", model=str(teacher), tokenizer=str(teacher), device=device, dtype=dtype)
    kwargs = {"truncation": True, "max_length": MAX_LENGTH, "function_to_apply": "none", "top_k": None}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    pipe(texts[:256], **kwargs)
    sync(device)
    start = time.perf_counter()
    pipe(texts, **kwargs)
    sync(device)
    elapsed = time.perf_counter() - start
    return {"rows": len(texts), "seconds": elapsed, "rows_per_s": len(texts) / elapsed, "batch_size": batch_size}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--shape", default="bert-base")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-tokens", type=int, default=65_536)
    parser.add_argument("--max-batch-rows", type=int, default=1024)
    parser.add_argument("--pipeline-rows", type=int, default=10_000)
    parser.add_argument("--pipeline-batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_label.json")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({platform.machine()}, " \
        f"{os.cpu_count()} cores)"
    if not device.startswith("cuda"):
        print("no GPU here: running on CPU as a smoke test; the figures say nothing about the GPU target")
    texts = sentences(args.rows)
    with tempfile.TemporaryDirectory(prefix="zhkd-gpu-label-") as tmp:
        teacher = make_teacher(args.shape, Path(tmp), texts)
        ours = label_with_zhkd(teacher, texts, device, args.batch_tokens, args.max_batch_rows)
        print(f"zhkd:                  {ours['rows_per_s']:10,.0f} rows/s ({ours['rows']:,} rows, "
              f"{ours['seconds']:.2f} s, tokenising {ours['tokenise_seconds']:.2f} s)", flush=True)
        subset = texts[: args.pipeline_rows]
        default = label_with_pipeline(teacher, subset, device, None)
        print(f"pipeline (default):    {default['rows_per_s']:10,.0f} rows/s ({default['rows']:,} rows)", flush=True)
        batched = label_with_pipeline(teacher, subset, device, args.pipeline_batch)
        print(f"pipeline (batch {args.pipeline_batch}): {batched['rows_per_s']:10,.0f} rows/s", flush=True)
    best_peer = max(default["rows_per_s"], batched["rows_per_s"])
    result = {
        "bench": "gpu_label", "device": name, "on_gpu": device.startswith("cuda"), "shape": args.shape,
        "precision": "bfloat16" if device.startswith("cuda") else "float32",
        "mean_chars": sum(map(len, texts)) / len(texts),
        "zhkd": ours, "pipeline_default": default, "pipeline_batched": batched,
        "ratio_vs_best_pipeline": ours["rows_per_s"] / best_peer,
        "target_rows_per_s": 20_000,
        "target_met": device.startswith("cuda") and ours["rows_per_s"] >= 20_000,
    }
    print(f"zhkd / best pipeline = {result['ratio_vs_best_pipeline']:.2f}x; target >= 20,000 rows/s on an H200: "
          f"{'met' if result['target_met'] else 'not met' if result['on_gpu'] else 'not measured (no GPU)'}")
    result["summary"] = [summary_row(
        f"label on {name} ({args.shape}, {result['precision']}): zhkd vs the best pipeline run",
        f"{ours['rows_per_s']:,.0f} rows/s ({ours['rows']:,} rows)",
        f"{best_peer:,.0f} rows/s ({len(subset):,} rows)", "rows/s", result["ratio_vs_best_pipeline"],
        note=("pipeline at its default batch size and at " + str(args.pipeline_batch) + "; not interleaved"
              + ("" if result["on_gpu"] else "; CPU smoke run, says nothing about the GPU target")))]
    result["meta"] = meta("gpu_label", started, load_before, device=name)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
