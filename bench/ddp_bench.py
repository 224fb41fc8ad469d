"""Data-parallel step time on CPU: the trainer's DistributedDataParallel against the hand-written gradient
all-reduce it replaced, two gloo ranks.

Each rank runs training steps of a random student on fixed random batches (same rows for every mode):
forward, summed loss over the global count, backward, gradients reduced, clip, AdamW. Modes:

- `ddp`: `zhkd.distill.train.data_parallel` (DDP, gradients all-reduced in buckets while backward runs,
  the loss multiplied by the world size because DDP averages);
- `manual`: the previous trainer's reduction, kept here as the peer: after backward, every gradient
  flattened into one buffer, one all-reduce, copied back;
- `manual-sync`: `manual` plus the four `.item()` reads per step the previous trainer made (on a CPU a
  read costs no wait; on a GPU it stalls the queue every step).

Rounds interleave the modes (drift and other load hit all alike); steps/s per mode is the mean over
rounds with a 95% interval, and each ratio to `manual` its per-round interval. Rank 0 writes
bench/results/ddp_bench.json (benchlib's format; `make bench-report` renders it).

    python -m torch.distributed.run --standalone --nproc_per_node 2 bench/ddp_bench.py \\
        [--shape small] [--batch-size 16] [--seq-len 64] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import RESULTS, command_line, interval, meta, summary_row, write_result  # noqa: E402

MODES = ("ddp", "manual", "manual-sync")


def manual_reduce(model, world_size: int) -> None:
    """The previous trainer's `reduce_gradients`: one flat all-reduce after backward."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    torch.distributed.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset: offset + p.numel()].view_as(p))
        offset += p.numel()


def run_mode(mode: str, args, rank: int, world: int, batches) -> float:
    """Steps/s of `args.steps` steps (after one warm-up step) in `mode`, timed on rank 0 between barriers."""
    import torch
    import torch.distributed as dist

    from zhkd.distill.config import TrainConfig
    from zhkd.distill.students import build_model
    from zhkd.distill.train import JsonlLog, Run, data_parallel, make_optimizer

    model = build_model(args.shape, kind="sequence", vocab_size=args.vocab, num_labels=2, seed=0).train()
    optimizer = make_optimizer(model, TrainConfig())
    run = Run(Path("."), "classification", ["a", "b"], None, None, JsonlLog(Path("."), enabled=False), rank=rank,
              world_size=world)
    forward = data_parallel(model, run) if mode == "ddp" else model

    def step(ids, labels):
        logits = forward(input_ids=ids).logits
        total = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        count = torch.tensor([float(len(labels))])
        dist.all_reduce(count)
        loss = total / count
        if mode == "ddp":
            (loss * world).backward()
        else:
            loss.backward()
            manual_reduce(model, world)
        if mode == "manual-sync":
            for value in (total, count, total, count):
                value.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(*batches[0])
    dist.barrier()
    start = time.perf_counter()
    for i in range(args.steps):
        step(*batches[i % len(batches)])
    dist.barrier()
    return args.steps / (time.perf_counter() - start)


def main() -> None:
    import torch

    from zhkd.distill.train import distributed

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="small")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per rank per step")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "ddp_bench.json")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()
    with distributed() as (rank, world, _):
        if world < 2:
            raise SystemExit("run under torchrun with --nproc_per_node 2 (or more)")
        generator = torch.Generator().manual_seed(rank)
        batches = [(torch.randint(5, args.vocab, (args.batch_size, args.seq_len), generator=generator),
                    torch.randint(0, 2, (args.batch_size,), generator=generator)) for _ in range(4)]
        rates: dict[str, list[float]] = {m: [] for m in MODES}
        for round_ in range(args.rounds):
            order = MODES if round_ % 2 == 0 else MODES[::-1]
            for mode in order:
                rates[mode].append(run_mode(mode, args, rank, world, batches))
                if rank == 0:
                    print(f"round {round_} {mode:12s} {rates[mode][-1]:.2f} steps/s", flush=True)
        if rank != 0:
            return
        modes = {}
        for mode, values in rates.items():
            mean, half = interval(values)
            modes[mode] = {"steps_per_s": mean, "ci95": half, "runs": values}
            print(f"{mode:12s} {mean:.2f} ± {half:.2f} steps/s")
        shape = f"{args.shape}, {world} gloo ranks x {args.batch_size} rows x {args.seq_len} tokens"
        summary = []
        for peer, what in (("manual", "the flat all-reduce after backward"),
                           ("manual-sync", "the previous trainer (flat all-reduce, 4 reads a step)")):
            per_round = [a / b for a, b in zip(rates["ddp"], rates[peer], strict=True)]
            ratio, half = interval(per_round)
            summary.append(summary_row(
                f"data-parallel step ({shape}): DistributedDataParallel vs {what}",
                f"{modes['ddp']['steps_per_s']:.2f} steps/s", f"{modes[peer]['steps_per_s']:.2f} steps/s",
                "steps/s", ratio, interval=half,
                note=f"{args.steps} steps x {args.rounds} rounds, interleaved; "
                     f"torch threads {torch.get_num_threads()}"))
        result = {"world_size": world, "shape": args.shape, "batch_size": args.batch_size, "seq_len": args.seq_len,
                  "steps": args.steps, "rounds": args.rounds, "modes": modes, "summary": summary,
                  "meta": meta("ddp_bench", started, load_before)}
        # The command as typed: torchrun around the script.
        result["meta"]["command"] = command_line().replace(
            "python ", f"python -m torch.distributed.run --standalone --nproc_per_node {world} ", 1)
        write_result(args.out, result)
        print(f"ddp / manual = {summary[0]['ratio']:.2f}x")


if __name__ == "__main__":
    main()
