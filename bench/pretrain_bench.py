"""Pre-training speed: steps/s of `zhkd pretrain` by shape, against the stock Hugging Face MLM loss.

Same packed blocks of the bundled training text (max length 128, batch 32), same masking, same
optimiser, same initial weights. "stock" is `BertForMaskedLM(..., labels=...)`, which projects every
position onto the vocabulary; zhkd projects only the masked ones. The two train side by side in one
process, step by step on the same batch (zhkd then stock, then stock then zhkd, ...), so both meet the
same machine load; a step is timed from collation to the optimiser step. The bert-base shape (zhkd loss
only: a step takes tens of seconds here) is the reference a student is measured against. Writes
bench/results/pretrain_bench.json.

    python bench/pretrain_bench.py [--steps 12] [--shapes mini,small,bert-base] [--threads N]

On a CPU that other processes keep busy, torch's OpenMP threads wait on each other and a step can take
ten times longer with two threads than with one: the machine's load average is recorded with the figures,
and the CPU time of each step beside its wall time.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchlib import RESULTS, interleave, interval, meta, summary_row, write_result  # noqa: E402


def bundled_train_texts() -> list[str]:
    from zhkd.pipelines.corpora import load_corpus

    texts = [r["text"] for r in load_corpus("chnsenti", "train")]
    return texts + ["".join(r["tokens"]) for r in load_corpus("pd98-ner", "train")]


class Trainer:
    """One model of a shape being pre-trained with zhkd's MLM loss or the stock one."""

    def __init__(self, shape: str, tokenizer, vocab_size: int, blocks, batch_size: int, stock: bool) -> None:
        import torch

        from zhkd.distill.pretrain import PretrainConfig
        from zhkd.distill.students import build_model
        from zhkd.distill.train import make_optimizer

        self.model = build_model(shape, kind="mlm", vocab_size=vocab_size, pad_token_id=tokenizer.pad_token_id,
                                 seed=0).train()
        self.optimizer = make_optimizer(self.model, PretrainConfig())
        self.candidates = torch.arange(5, vocab_size)
        self.tokenizer, self.blocks, self.batch_size, self.stock = tokenizer, blocks, batch_size, stock

    def step(self, step: int) -> dict:
        import torch

        from zhkd.distill.pretrain import _mlm_loss, collate, mask_batch

        t = self.tokenizer
        batch = self.blocks[step * self.batch_size: (step + 1) * self.batch_size]
        ids, attention, units = collate(batch, t.pad_token_id)
        corrupted, targets = mask_batch(ids, units, mask_id=t.mask_token_id, candidate_ids=self.candidates,
                                        mask_prob=0.15, generator=torch.Generator().manual_seed(step))
        if self.stock:
            labels = torch.where(targets, ids, torch.full_like(ids, -100))
            loss = self.model(input_ids=corrupted, attention_mask=attention, labels=labels).loss
        else:
            loss, _ = _mlm_loss(self.model, ids, attention, corrupted, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"steps": 1, "loss": loss.item()}


def main() -> int:
    import torch

    from zhkd.distill.pretrain import PretrainConfig, epoch_order, prepare_blocks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per shape (after 2 untimed ones)")
    parser.add_argument("--shapes", default="mini,small,bert-base")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--texts", type=int, help="use only the first N bundled texts (smoke runs)")
    parser.add_argument("--out", type=Path, default=RESULTS / "pretrain_bench.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()

    texts = bundled_train_texts()[: args.texts]
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        vocab, tokenizer, blocks = prepare_blocks(texts, Path(tmp), PretrainConfig(max_length=args.max_length))
    prepare_s = time.perf_counter() - clock
    blocks = [blocks[i] for i in epoch_order(len(blocks), 0, 0)]
    steps_per_epoch = math.ceil(len(blocks) / args.batch_size)
    print(f"{len(texts):,} texts, vocabulary {len(vocab):,}, {len(blocks):,} blocks of <= {args.max_length} "
          f"tokens ({steps_per_epoch} steps per epoch at batch {args.batch_size}); vocabulary+tokenise+pack "
          f"{prepare_s:.1f} s", file=sys.stderr)

    rows, summary = [], []
    for shape in args.shapes.split(","):
        # A bert-base step takes tens of seconds here: two timed steps, and no stock comparison.
        big = shape == "bert-base"
        steps, warmup = (2, 1) if big else (args.steps, 2)
        trainers = {"zhkd": Trainer(shape, tokenizer, len(vocab), blocks, args.batch_size, stock=False)}
        if not big:
            trainers["stock"] = Trainer(shape, tokenizer, len(vocab), blocks, args.batch_size, stock=True)
        timed = interleave(warmup + steps, {name: tr.step for name, tr in trainers.items()})
        timed = {name: rounds[warmup:] for name, rounds in timed.items()}
        zhkd = statistics.median(r["seconds"] for r in timed["zhkd"])
        zhkd_cpu = statistics.median(r["cpu_seconds"] for r in timed["zhkd"])
        row = {"shape": shape, "timed_steps": steps, "zhkd_steps_per_s": 1 / zhkd, "zhkd_cpu_s_per_step": zhkd_cpu,
               "epoch_minutes": steps_per_epoch * zhkd / 60}
        line = f"{shape:10s} zhkd {row['zhkd_steps_per_s']:6.2f} steps/s ({zhkd_cpu:.2f} CPU s/step)"
        if not big:
            stock = statistics.median(r["seconds"] for r in timed["stock"])
            stock_cpu = statistics.median(r["cpu_seconds"] for r in timed["stock"])
            per_step = [b["seconds"] / a["seconds"] for a, b in zip(timed["zhkd"], timed["stock"], strict=True)]
            mean, half = interval(per_step)
            row.update(stock_hf_steps_per_s=1 / stock, stock_cpu_s_per_step=stock_cpu, speedup_vs_stock=stock / zhkd,
                       cpu_speedup_vs_stock=stock_cpu / zhkd_cpu, per_step_speedup=mean, per_step_interval=half)
            line += (f" | stock HF loss {row['stock_hf_steps_per_s']:6.2f} steps/s ({stock_cpu:.2f} CPU s/step) | "
                     f"{row['speedup_vs_stock']:.2f}x wall, {row['cpu_speedup_vs_stock']:.2f}x CPU")
            summary.append(summary_row(
                f"MLM pre-training step, {shape}: zhkd loss vs stock BertForMaskedLM loss",
                f"{1 / zhkd:.2f} steps/s", f"{1 / stock:.2f} steps/s", "steps/s", stock / zhkd, interval=half,
                note=(f"medians of {steps} interleaved steps, batch {args.batch_size} x {args.max_length}; "
                      f"CPU-time ratio {stock_cpu / zhkd_cpu:.2f}; one epoch {row['epoch_minutes']:.1f} min")))
        rows.append(row)
        print(f"{line} | one epoch {row['epoch_minutes']:.1f} min", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["shape"] == "bert-base"), None)
    if base:
        for row in rows:
            row["speedup_vs_bert_base"] = row["zhkd_steps_per_s"] / base["zhkd_steps_per_s"]
            row["cpu_speedup_vs_bert_base"] = base["zhkd_cpu_s_per_step"] / row["zhkd_cpu_s_per_step"]
            if row is not base:
                summary.append(summary_row(
                    f"MLM pre-training step, {row['shape']} vs the bert-base shape (zhkd loss)",
                    f"{row['zhkd_steps_per_s']:.2f} steps/s", f"{base['zhkd_steps_per_s']:.3f} steps/s", "steps/s",
                    row["speedup_vs_bert_base"],
                    note=(f"CPU-time ratio {row['cpu_speedup_vs_bert_base']:.1f}; bert-base: "
                          f"{base['timed_steps']} steps")))
    write_result(args.out, {
        "torch_threads": torch.get_num_threads(), "texts": len(texts), "vocab_size": len(vocab),
        "blocks": len(blocks), "steps_per_epoch": steps_per_epoch, "max_length": args.max_length,
        "batch_size": args.batch_size, "prepare_s": prepare_s, "shapes": rows, "summary": summary,
        "meta": meta("pretrain_bench", started, load_before),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
