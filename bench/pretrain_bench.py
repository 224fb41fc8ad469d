"""Pre-training speed: steps/s of `zhkd pretrain` by shape, against the stock Hugging Face MLM loss.

Same packed blocks of the bundled training text (max length 128, batch 32), same masking, same
optimiser. "stock" is `BertForMaskedLM(..., labels=...)`, which projects every position onto the
vocabulary; zhkd projects only the masked ones. The bert-base shape (zhkd loss only: a step takes
tens of seconds here) is the reference a student is measured against. Writes bench/results/pretrain.json.

    python bench/pretrain_bench.py [--steps 12] [--shapes mini,small,bert-base] [--threads N]

On a CPU that other processes keep busy, torch's OpenMP threads wait on each other and a step can take
ten times longer with two threads than with one: the machine's load average is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results" / "pretrain.json"


def bundled_train_texts() -> list[str]:
    from zhkd.pipelines.corpora import load_corpus

    texts = [r["text"] for r in load_corpus("chnsenti", "train")]
    return texts + ["".join(r["tokens"]) for r in load_corpus("pd98-ner", "train")]


def time_steps(shape: str, blocks, tokenizer, vocab_size: int, *, steps: int, batch_size: int, stock: bool,
               warmup: int = 2) -> tuple[float, float]:
    """Wall and process-CPU seconds per optimiser step, medians over `steps` after `warmup` untimed steps.

    With one thread, CPU seconds are what the step would take on a core of its own, whatever else runs.
    """
    import statistics

    import torch

    from zhkd.distill.pretrain import PretrainConfig, _mlm_loss, collate, mask_batch
    from zhkd.distill.students import build_model
    from zhkd.distill.train import make_optimizer

    model = build_model(shape, kind="mlm", vocab_size=vocab_size, pad_token_id=tokenizer.pad_token_id).train()
    optimizer = make_optimizer(model, PretrainConfig())
    candidates = torch.arange(5, vocab_size)
    times, cpu_times = [], []
    for step in range(steps + warmup):
        batch = blocks[step * batch_size : (step + 1) * batch_size]
        start, cpu_start = time.perf_counter(), time.process_time()
        ids, attention, units = collate(batch, tokenizer.pad_token_id)
        corrupted, targets = mask_batch(ids, units, mask_id=tokenizer.mask_token_id, candidate_ids=candidates,
                                        mask_prob=0.15, generator=torch.Generator().manual_seed(step))
        if stock:
            labels = torch.where(targets, ids, torch.full_like(ids, -100))
            loss = model(input_ids=corrupted, attention_mask=attention, labels=labels).loss
        else:
            loss, _ = _mlm_loss(model, ids, attention, corrupted, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    return statistics.median(times), statistics.median(cpu_times)


def main() -> None:
    import torch

    from zhkd.distill.pretrain import PretrainConfig, epoch_order, prepare_blocks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--shapes", default="mini,small,bert-base")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()  # other work on the machine slows every figure: it is recorded
    texts = bundled_train_texts()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        vocab, tokenizer, blocks = prepare_blocks(texts, Path(tmp), PretrainConfig(max_length=args.max_length))
    prepare_s = time.perf_counter() - started
    blocks = [blocks[i] for i in epoch_order(len(blocks), 0, 0)]
    steps_per_epoch = math.ceil(len(blocks) / args.batch_size)
    print(f"{len(texts):,} texts, vocabulary {len(vocab):,}, {len(blocks):,} blocks of <= {args.max_length} "
          f"tokens ({steps_per_epoch} steps per epoch at batch {args.batch_size}); vocabulary+tokenise+pack "
          f"{prepare_s:.1f} s")

    rows = []
    for shape in args.shapes.split(","):
        # A bert-base step takes tens of seconds here: two timed steps, and no stock comparison.
        big = shape == "bert-base"
        steps, warmup = (2, 1) if big else (args.steps, 2)
        timing = {"batch_size": args.batch_size, "steps": steps, "warmup": warmup}
        zhkd, zhkd_cpu = time_steps(shape, blocks, tokenizer, len(vocab), stock=False, **timing)
        row = {"shape": shape, "zhkd_steps_per_s": 1 / zhkd, "zhkd_cpu_s_per_step": zhkd_cpu,
               "epoch_minutes": steps_per_epoch * zhkd / 60, "timed_steps": steps}
        line = f"{shape:10s} zhkd {row['zhkd_steps_per_s']:6.2f} steps/s ({zhkd_cpu:.2f} CPU s/step)"
        if not big:
            stock, stock_cpu = time_steps(shape, blocks, tokenizer, len(vocab), stock=True, **timing)
            row.update(stock_hf_steps_per_s=1 / stock, stock_cpu_s_per_step=stock_cpu, speedup_vs_stock=stock / zhkd,
                       cpu_speedup_vs_stock=stock_cpu / zhkd_cpu)
            line += (f" | stock HF loss {row['stock_hf_steps_per_s']:6.2f} steps/s ({stock_cpu:.2f} CPU s/step) | "
                     f"{row['speedup_vs_stock']:.2f}x wall, {row['cpu_speedup_vs_stock']:.2f}x CPU")
        rows.append(row)
        print(f"{line} | one epoch {row['epoch_minutes']:.1f} min", flush=True)
    base = next((r for r in rows if r["shape"] == "bert-base"), None)
    if base:
        for row in rows:
            row["speedup_vs_bert_base"] = row["zhkd_steps_per_s"] / base["zhkd_steps_per_s"]
            row["cpu_speedup_vs_bert_base"] = base["zhkd_cpu_s_per_step"] / row["zhkd_cpu_s_per_step"]
            print(f"{row['shape']:10s} {row['speedup_vs_bert_base']:6.1f}x the bert-base shape's steps/s "
                  f"({row['cpu_speedup_vs_bert_base']:.1f}x by CPU time)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "texts": len(texts), "vocab_size": len(vocab), "blocks": len(blocks), "steps_per_epoch": steps_per_epoch,
        "max_length": args.max_length, "batch_size": args.batch_size, "prepare_s": prepare_s, "shapes": rows,
    }, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
