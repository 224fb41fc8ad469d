"""Do a row's float32 logits on CPU depend on the batch it shares, and on the torch thread count?

The reason zhkd forms teacher batches itself (docs/build.md): if a row's logits change in the last bits
with its batch neighbours or with the thread count, batches formed by timing (Beam's BatchElements)
would make the stored bytes depend on how the runner bundled the rows. This bench measures it with a
random classifier (4 layers, hidden 256 by default) and the bundled sentiment rows:

- fixed padding: every row padded to the same length L; each row alone (batch 1) against the same
  rows in batches of 2, 8, 16 and 64 (in order): how many rows' logits differ in any bit;
- dynamic padding: each row alone, unpadded, against batches of 8 padded to their longest row;
- threads: rows of --long-length tokens in the same batches of 8, with 1 and with 2 torch threads.

Writes bench/results/logit_bits_bench.json.

    python bench/logit_bits_bench.py [--rows 64] [--long-rows 3000] [--long-length 512] [--shape small]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchlib import RESULTS, meta, summary_row, write_result  # noqa: E402
from label_bench import make_teacher  # noqa: E402


def logits_of(model, rows: list[list[int]], batch: int, pad_id: int, width: int | None = None):
    """Logits of rows in consecutive batches, each padded to `width` (or to its batch's longest row)."""
    import numpy as np
    import torch

    out = []
    for at in range(0, len(rows), batch):
        chunk = rows[at:at + batch]
        w = width or max(map(len, chunk))
        ids = np.full((len(chunk), w), pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), w), dtype=np.int64)
        for i, r in enumerate(chunk):
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1
        with torch.inference_mode():
            out.append(model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy())
    return np.concatenate(out)


def differing(a, b) -> tuple[int, float]:
    """Rows whose logits differ in any bit, and the largest absolute difference."""
    import numpy as np

    rows = int((a.view(np.uint32) != b.view(np.uint32)).any(axis=1).sum())
    return rows, float(np.abs(a - b).max())


def main() -> int:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from zhkd.distill.students import Shape
    from zhkd.pipelines.corpora import load_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--long-rows", type=int, default=3000)
    parser.add_argument("--long-length", type=int, default=512)
    parser.add_argument("--shape", default="small", help="catalogue shape of the random classifier")
    parser.add_argument("--out", type=Path, default=RESULTS / "logit_bits_bench.json")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()

    corpus = [r["text"] for r in load_corpus("chnsenti", "train")]
    with tempfile.TemporaryDirectory() as tmp:
        shape = args.shape if args.shape != "tiny" else Shape("tiny-32x2", 2, 32, 2, 64)
        make_teacher(shape, Path(tmp), corpus)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        model = AutoModelForSequenceClassification.from_pretrained(tmp, use_safetensors=True).eval()
    pad = tokenizer.pad_token_id
    rows = tokenizer(corpus[: args.rows], truncation=True, max_length=128)["input_ids"]
    width = max(map(len, rows))
    results, summary = {}, []
    torch.set_num_threads(1)
    alone = logits_of(model, rows, 1, pad, width)
    for batch in (2, 8, 16, 64):
        n, diff = differing(alone, logits_of(model, rows, batch, pad, width))
        results[f"fixed_padding_batch_{batch}"] = {"rows_differing": n, "rows": len(rows), "max_abs_diff": diff}
        summary.append(summary_row(f"logits on CPU, batch {batch} vs batch 1, all rows padded to {width} tokens",
                                   f"{n} of {len(rows)} rows differ", "batch 1", "rows", None,
                                   note=f"max abs difference {diff:.1e}; {args.shape} shape, 1 thread"))
    unpadded = logits_of(model, rows, 1, pad)
    n, diff = differing(unpadded, logits_of(model, rows, 8, pad))
    results["dynamic_padding_batch_8"] = {"rows_differing": n, "rows": len(rows), "max_abs_diff": diff}
    summary.append(summary_row("logits on CPU, batches of 8 padded to their longest vs each row alone",
                               f"{n} of {len(rows)} rows differ", "batch 1, unpadded", "rows", None,
                               note=f"max abs difference {diff:.1e}"))
    text = "".join(corpus)
    span = args.long_length - 2
    starts = [(i * span) % (len(text) - span) for i in range(args.long_rows)]   # wraps around the corpus
    long_rows = tokenizer([text[at:at + span] for at in starts], truncation=True,
                          max_length=args.long_length)["input_ids"]
    one = logits_of(model, long_rows, 8, pad)
    torch.set_num_threads(2)
    two = logits_of(model, long_rows, 8, pad)
    n, diff = differing(one, two)
    results["threads_1_vs_2"] = {"rows_differing": n, "rows": len(long_rows), "max_abs_diff": diff,
                                 "length": args.long_length}
    summary.append(summary_row(f"logits on CPU, {args.long_length}-token rows, 2 torch threads vs 1, same batches",
                               f"{n} of {len(long_rows)} rows differ", "1 thread", "rows", None,
                               note=f"max abs difference {diff:.1e}; batches of 8"))
    for line in summary:
        print(f"{line['comparison']}: {line['ours']} ({line['note']})", file=sys.stderr)
    write_result(args.out, {"shape": args.shape, "torch": torch.__version__, "results": results, "summary": summary,
                            "meta": meta("logit_bits_bench", started, load_before)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
