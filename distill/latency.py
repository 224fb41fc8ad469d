"""Measured latency and throughput of a model on the current device: the basis of every speed-up."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Latency:
    device: str
    dtype: str  # the weights' dtype while timed: the one the model would serve in on that device
    seq_len: int
    batch_size: int
    p50_ms: float
    p95_ms: float
    rows_per_s: float
    runs: int  # timed passes actually made (fewer than asked when the time budget ran out)

    def to_dict(self) -> dict:
        return asdict(self)


MIN_RUNS = 5  # a time budget never cuts a measurement below this many passes


def serving_dtype(device: str) -> str:
    """The dtype a model serves in on `device`: bfloat16 on a GPU (as the teacher labels there), float32
    on a CPU (where bf16 matrix work is slower on most processors)."""
    return "bfloat16" if device.startswith("cuda") else "float32"


def measure_latency(model, *, seq_len: int = 64, batch_size: int = 1, runs: int = 30, warmup: int = 3,
                    device: str | None = None, max_seconds: float | None = None, dtype: str | None = None) -> Latency:
    """Time `runs` forward passes over fixed random ids (a local generator, never the global RNG), or
    fewer (at least MIN_RUNS) once the timed passes have taken `max_seconds`: a BERT-base at batch 32
    would otherwise take minutes on a small CPU, for a mean that five passes already pin down.

    The weights are timed in `dtype` (default: `serving_dtype(device)`); another dtype than the model's
    is timed on a converted copy, so the caller's model is never rounded."""
    import copy

    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or serving_dtype(device)
    weights = next(model.parameters(), None)
    if weights is not None and weights.dtype != getattr(torch, dtype):
        model = copy.deepcopy(model).to(dtype=getattr(torch, dtype))
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (batch_size, seq_len), generator=generator).to(device)
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
                if max_seconds is not None and len(times) >= MIN_RUNS and sum(times) >= max_seconds:
                    break
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return Latency(device, dtype, seq_len, batch_size, statistics.median(times) * 1e3, p95 * 1e3,
                   batch_size / statistics.mean(times), len(times))
