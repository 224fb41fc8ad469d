"""Measured latency and throughput on the current device: the basis of every speed-up.

Models that are compared are timed in alternation: each round calls every model once, and the order
rotates by one model each round, so a slow spell on a shared machine (another job, a warm-up of the
clock) falls on all of them alike instead of on whichever was timed during it, and no model always
runs right after the same other one. Each model's record keeps its median and the spread around it
(p10, p25, p75, p90, p95), so a reader sees whether a difference is larger than the noise.

A transformer is timed in the dtype it would serve in on the device (`serving_dtype`): bfloat16 on a
GPU, float32 on a CPU; the record names it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Latency:
    device: str
    dtype: str | None  # the weights' dtype while timed (None: not a torch model, e.g. the classical baseline)
    seq_len: int
    batch_size: int
    p50_ms: float
    p10_ms: float
    p25_ms: float
    p75_ms: float
    p90_ms: float
    p95_ms: float
    rows_per_s: float
    runs: int  # timed passes actually made (fewer than asked when the time budget ran out)

    def to_dict(self) -> dict:
        return asdict(self)


MIN_RUNS = 5  # a time budget never cuts a measurement below this many passes (rounds)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(times: Sequence[float], *, device: str, dtype: str | None, seq_len: int, batch_size: int) -> Latency:
    """A Latency record from timed passes (seconds)."""
    ms = [t * 1e3 for t in times]
    return Latency(device, dtype, seq_len, batch_size, p50_ms=statistics.median(ms), p10_ms=percentile(ms, 10),
                   p25_ms=percentile(ms, 25), p75_ms=percentile(ms, 75), p90_ms=percentile(ms, 90),
                   p95_ms=percentile(ms, 95), rows_per_s=batch_size / statistics.mean(times), runs=len(times))


def round_order(names: Sequence[str], round_index: int) -> list[str]:
    """The order of one round: every model once, starting `round_index` places further along."""
    shift = round_index % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


def time_in_rounds(calls: Mapping[str, Callable[[], object]], *, runs: int = 30, warmup: int = 3,
                   max_seconds: float | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of each timed call, per model, timed round-robin (see `round_order`).

    `warmup` untimed rounds first, then up to `runs` timed rounds; with `max_seconds`, the rounds stop
    (after at least MIN_RUNS) once the timed calls have taken `max_seconds` per model on average. Every
    model gets the same number of timed calls.
    """
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    budget = None if max_seconds is None else max_seconds * len(names)
    spent = 0.0
    for index in range(warmup + runs):
        for name in round_order(names, index):
            start = clock()
            calls[name]()
            elapsed = clock() - start
            if index >= warmup:
                times[name].append(elapsed)
                spent += elapsed
        done = index - warmup + 1
        if budget is not None and done >= MIN_RUNS and spent >= budget:
            break
    return times


def serving_dtype(device: str) -> str:
    """The dtype a model serves in on `device`: bfloat16 on a GPU (as the teacher labels there), float32
    on a CPU (where bf16 matrix work is slower on most processors)."""
    return "bfloat16" if device.startswith("cuda") else "float32"


def forward_call(model, *, seq_len: int, batch_size: int, device: str,
                 dtype: str | None = None) -> Callable[[], object]:
    """One forward pass of `model` over fixed random ids (a local generator, never the global RNG), synchronised
    on CUDA so that the clock sees the whole pass. The model is moved to `device` and set to eval; the
    caller runs the calls under `torch.inference_mode()` (entered once, not timed with every pass).

    The weights are timed in `dtype` (default: `serving_dtype(device)`); where that is not the model's own,
    a converted copy is timed, so the caller's model is never rounded."""
    import copy

    import torch

    target = getattr(torch, dtype or serving_dtype(device))
    weights = next(model.parameters(), None)
    if weights is not None and weights.dtype != target:
        model = copy.deepcopy(model).to(dtype=target)
    model.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (batch_size, seq_len), generator=generator).to(device)
    mask = torch.ones_like(ids)

    def call():
        out = model(input_ids=ids, attention_mask=mask)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return call


def measure_latency(model, *, seq_len: int = 64, batch_size: int = 1, runs: int = 30, warmup: int = 3,
                    device: str | None = None, max_seconds: float | None = None, dtype: str | None = None) -> Latency:
    """One model alone: `runs` forward passes (fewer, at least MIN_RUNS, once they took `max_seconds`: a
    BERT-base at batch 32 would otherwise take minutes on a small CPU, for a mean that five passes already
    pin down). Models that are compared with each other go through `time_in_rounds` together instead.
    Timed in `dtype` (default: the device's `serving_dtype`), on a converted copy where it differs."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or serving_dtype(device)
    call = forward_call(model, seq_len=seq_len, batch_size=batch_size, device=device, dtype=dtype)
    if device == "cuda":
        torch.cuda.synchronize()
    with torch.inference_mode():
        times = time_in_rounds({"model": call}, runs=runs, warmup=warmup, max_seconds=max_seconds)["model"]
    return summarise(times, device=device, dtype=dtype, seq_len=seq_len, batch_size=batch_size)
