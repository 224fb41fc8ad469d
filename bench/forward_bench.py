"""The teacher forwards tried on CPU, on the same batches: why the build runs the packed forward.

One randomly initialised classifier (bert-base-shaped by default) labels the same rows of the bundled
sentiment corpus, tokenised and cut into batches as the build cuts them (`plan_batches`, the CPU budget),
by each of these forwards in interleaved rounds (the order alternating), at each of --threads torch
thread counts (default 1, the build's):

- plain: the model's own forward on the padded batches, SDPA attention (what zhkd ran before);
- plain, eager attention: the same with transformers' eager attention;
- packed: `pipelines/packed_forward.PackedForward`, what the build runs now (real tokens only, query, key
  and value in one product, SDPA attention per run of equal-length rows, the last layer for the first
  tokens alone, which are all a sequence classifier's head reads; the products through oneDNN with GELU
  and the residual adds fused into them, where torch has it);
- packed, last layer for every token: the same with the last layer run for every token;
- packed, attention per run / over the padded batch: the same with attention always per run of
  equal-length rows, or always as one masked call over the padded batch per layer (the packed forward
  does the first at one thread, the second at several);
- packed, separate q/k/v: the same with three products for the projections;
- packed, eager attention: the same with matmul/softmax/matmul attention;
- packed, torch's linear: the same with the products through torch's `F.linear` (MKL), GELU and the
  adds apart (only where the packed forward runs oneDNN);
- packed, inductor (`--compile`, by default where a C++ compiler is found): the same with everything
  after attention compiled by `torch.compile` (inductor, dynamic shapes, torch's linear inside, a cold
  cache); its compile seconds (and first pass) are recorded, as a build pays them in every worker
  process;
- one row at a time: the model's own forward on each row alone, no padding at all (what
  `pipeline(batch_size=1)` runs, without the pipeline's own pre- and post-processing).

The packed variants change the layers before the last; the last runs as the build runs it (for the
first tokens alone) but in "last layer for every token". Each forward is timed per round by this
process's CPU seconds and by wall time; speed ratios are against the plain forward, with their 95%
intervals over rounds, by CPU seconds at one thread (less moved by other work on the machine than wall
time) and by wall time at several (waiting threads spin, and count). Every forward's logits are
compared with the one-row-at-a-time logits (each must be within 1e-5, else the run fails). Results:
bench/results/forward_bench.json.

    python bench/forward_bench.py [--rows 96] [--shape bert-base] [--rounds 4] [--threads 1] [--compile auto|yes|no]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchlib import RESULTS, interleave, interval, meta, summary_row, write_result  # noqa: E402
from label_bench import MAX_LENGTH, TOLERANCE, make_teacher  # noqa: E402


def attention_runs(layer, qkv, runs, eager: bool = False):
    """Attention per run of equal-length rows from the fused projections (as PackedForward does)."""
    import torch
    import torch.nn.functional as F

    attention = layer.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size
    context = []
    for first, rows, length in runs:
        q, k, v = qkv[first: first + rows * length].view(rows, length, 3, heads, size).permute(2, 0, 3, 1, 4)
        if eager:
            out = torch.matmul((torch.matmul(q, k.transpose(-1, -2)) * attention.scaling).softmax(-1), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=attention.scaling)
        context.append(out.transpose(1, 2).reshape(rows * length, heads * size))
    return torch.cat(context) if len(context) > 1 else context[0]


def separate_qkv_layer(layer, projection, x, packing, products):
    import torch

    from zhkd.pipelines.packed_forward import _after_attention

    attention = layer.attention.self
    qkv = torch.cat([products.linear(x, p.weight, p.bias) for p in (attention.query, attention.key, attention.value)],
                    dim=1)
    return _after_attention(layer, attention_runs(layer, qkv, packing.runs), x, products)


def eager_attention_layer(layer, projection, x, packing, products):
    from zhkd.pipelines.packed_forward import _after_attention

    return _after_attention(layer, attention_runs(layer, products.linear(x, *projection), packing.runs, eager=True),
                            x, products)


def dense_part(context, x, wo, bo, g1, b1, wi, bi, wout, bout, g2, b2, eps: float):
    """Everything of a layer after attention, as one function of tensors (what inductor compiles)."""
    import torch.nn.functional as F

    x = F.layer_norm(F.linear(context, wo, bo) + x, (x.shape[-1],), g1, b1, eps)
    return F.layer_norm(F.linear(F.gelu(F.linear(x, wi, bi)), wout, bout) + x, (x.shape[-1],), g2, b2, eps)


def compiled_layer(compiled):
    import torch.nn.functional as F

    def layer_fn(layer, projection, x, packing, products):
        output, ffn = layer.attention.output, layer.output
        return compiled(attention_runs(layer, F.linear(x, *projection), packing.runs), x, output.dense.weight,
                        output.dense.bias, output.LayerNorm.weight, output.LayerNorm.bias,
                        layer.intermediate.dense.weight, layer.intermediate.dense.bias, ffn.dense.weight,
                        ffn.dense.bias, ffn.LayerNorm.weight, ffn.LayerNorm.bias, ffn.LayerNorm.eps)
    return layer_fn


def main() -> int:

    from zhkd.models import load_model
    from zhkd.pipelines.build_config import DEFAULT_BATCH_TOKENS
    from zhkd.pipelines.corpora import load_corpus
    from zhkd.pipelines.teacher import TeacherTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--shape", default="bert-base")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS)
    parser.add_argument("--threads", default="1", help="torch thread counts, comma-separated (the build's default: 1)")
    parser.add_argument("--compile", choices=("auto", "yes", "no"), default="auto",
                        help="also time the inductor-compiled variant (auto: where a C++ compiler is found)")
    parser.add_argument("--out", type=Path, default=RESULTS / "forward_bench.json")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()

    corpus = [r["text"] for r in load_corpus("chnsenti", "train")]
    with tempfile.TemporaryDirectory(prefix="zhkd-forward-bench-") as tmp:
        teacher = make_teacher(args.shape, Path(tmp), corpus)
        tokenizer = TeacherTokenizer(str(teacher), "classification", MAX_LENGTH)
        model = load_model("sequence", teacher).eval()
        return measure(args, model, tokenizer, corpus, started, load_before, Path(tmp) / "inductor")


def measure(args, model, tokenizer, corpus: list[str], started: float, load_before, inductor_cache: Path) -> int:
    """Every forward on the same batches, interleaved; the result file."""
    import torch

    import zhkd.pipelines.packed_forward as packed_module
    from zhkd.augment.example import Variant
    from zhkd.pipelines.build_config import DEFAULT_MAX_BATCH_ROWS
    from zhkd.pipelines.teacher import plan_batches

    # Rows as the build hands them to `plan_batches`: an id, a length, and (here, for padding) the ids.
    variants = [Variant(f"{i:06d}", f"{i:06d}", t, None, None, None, None, (), True)
                for i, t in enumerate(corpus[: args.rows])]
    rows = [SimpleNamespace(id=v.id, length=len(e.input_ids), input_ids=e.input_ids)
            for v, e in zip(variants, tokenizer.encode(variants), strict=True)]
    batches = plan_batches(rows, batch_tokens=args.batch_tokens, max_rows=DEFAULT_MAX_BATCH_ROWS)
    padded = []
    for batch in batches:
        lengths = [len(r.input_ids) for r in batch]
        ids = torch.full((len(batch), max(lengths)), tokenizer.tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(batch):
            ids[i, : lengths[i]] = torch.tensor(row.input_ids)
            mask[i, : lengths[i]] = 1
        padded.append((ids, mask))
    torch_linear = packed_module.PackedForward(model, onednn=False)
    packed = packed_module.PackedForward(model)
    shipped_layer, head = packed_module._packed_layer, packed.head

    def plain(attention: str):
        def run():
            model.config._attn_implementation = attention
            try:
                return [model(input_ids=ids, attention_mask=mask).logits for ids, mask in padded]
            finally:
                model.config._attn_implementation = "sdpa"
        return run

    def packed_with(layer_fn, every_token: bool = False, forward=packed, whole_batch: bool | None = None):
        def run():
            packed_module._packed_layer = layer_fn
            if every_token:
                forward.head = dataclasses.replace(head, first_token_only=False)
            try:
                return [forward(ids, mask, whole_batch_attention=whole_batch) for ids, mask in padded]
            finally:
                packed_module._packed_layer, forward.head = shipped_layer, head
        return run

    def one_at_a_time():
        return [model(input_ids=torch.tensor([r.input_ids])).logits for b in batches for r in b]

    forwards = {"plain": plain("sdpa"), "plain, eager attention": plain("eager"), "packed": packed_with(shipped_layer),
                "packed, last layer for every token": packed_with(shipped_layer, every_token=True),
                "packed, attention per run": packed_with(shipped_layer, whole_batch=False),
                "packed, attention over the padded batch": packed_with(shipped_layer, whole_batch=True),
                "packed, separate q/k/v": packed_with(separate_qkv_layer),
                "packed, eager attention": packed_with(eager_attention_layer)}
    if packed.name != torch_linear.name:
        forwards["packed, torch's linear"] = packed_with(shipped_layer, forward=torch_linear)
    compile_seconds = None
    if args.compile == "yes" or (args.compile == "auto" and (shutil.which("c++") or shutil.which("g++"))):
        # A cold compile, as a fresh worker pays it: inductor's caches in a new directory.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache)
        compiled = torch.compile(dense_part, dynamic=True)
        forwards["packed, inductor"] = packed_with(compiled_layer(compiled))
        with torch.inference_mode():
            at = time.perf_counter()
            forwards["packed, inductor"]()  # compiles
            compile_seconds = time.perf_counter() - at
    forwards["one row at a time"] = one_at_a_time

    by_threads, summary, failed = {}, [], []
    for threads in [int(t) for t in str(args.threads).split(",")]:
        torch.set_num_threads(threads)
        figures = time_forwards(forwards, args.rounds, len(rows))
        by_threads[str(threads)] = figures
        failed += [f"{threads} threads, {name}: max |logit difference| {f['max_abs_logit_diff']:.2e} > {TOLERANCE:g}"
                   for name, f in figures.items() if f["max_abs_logit_diff"] > TOLERANCE]
        summary += summary_rows(figures, threads, args.shape, compile_seconds)
    result = {"shape": args.shape, "rows": len(rows), "batches": len(batches),
              "tokens": sum(len(r.input_ids) for r in rows), "padded_tokens": sum(ids.numel() for ids, _ in padded),
              "batch_tokens": args.batch_tokens, "compile_seconds": compile_seconds, "by_threads": by_threads,
              "failed": failed or None, "summary": summary}
    result["meta"] = meta("forward_bench", started, load_before, device="cpu")
    write_result(args.out, result)
    if failed:
        print("forward_bench FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def time_forwards(forwards: dict, rounds: int, rows: int) -> dict:
    """Every forward in interleaved rounds at the current thread count: seconds, CPU seconds, the speed
    ratio to the plain forward per round (by CPU seconds at one thread, which other work on the machine
    moves less; by wall time at several, where waiting threads spin), and the logits' distance from
    one row at a time."""
    import numpy as np
    import torch

    logits: dict[str, np.ndarray] = {}

    def contender(name: str):
        def one_round(r: int) -> dict:
            with torch.inference_mode():
                out = forwards[name]()
            logits[name] = np.concatenate([o.reshape(-1, o.shape[-1]).numpy() for o in out])
            return {"rows": rows}
        return one_round

    with torch.inference_mode():
        for run in forwards.values():  # warm-up: oneDNN and SDPA pick their kernels per shape
            run()
    timed = interleave(rounds, {name: contender(name) for name in forwards})
    key = "cpu_seconds" if torch.get_num_threads() == 1 else "seconds"
    base, reference = timed["plain"], logits["one row at a time"]
    figures = {}
    for name, timings in timed.items():
        mean, half = interval([b[key] / r[key] for r, b in zip(timings, base, strict=True)])
        figures[name] = {
            "cpu_seconds": sum(r["cpu_seconds"] for r in timings) / len(timings),
            "seconds": sum(r["seconds"] for r in timings) / len(timings),
            "vs_plain": {"by": key, "mean": mean, "interval": half},
            "max_abs_logit_diff": float(np.abs(logits[name] - reference).max()),
        }
        print(f"{torch.get_num_threads()} thread(s), {name:40s} {figures[name][key]:6.2f} {key}  {mean:.2f}x ± "
              f"{half:.2f} of plain  (max logit diff {figures[name]['max_abs_logit_diff']:.1e})", file=sys.stderr)
    return figures


def summary_rows(figures: dict, threads: int, shape: str, compile_seconds: float | None) -> list[dict]:
    rows = []
    for name, f in figures.items():
        if name == "plain":
            continue
        key = f["vs_plain"]["by"]
        unit = "CPU s" if key == "cpu_seconds" else "s"
        note = f"max logit difference from one row at a time {f['max_abs_logit_diff']:.1e}"
        if name == "packed, inductor":
            note += f"; compiling (and its first pass) took {compile_seconds:.0f} s"
        rows.append(summary_row(
            f"teacher forward on CPU ({shape}, {threads} thread{'s' if threads > 1 else ''}): {name} vs plain",
            f"{f[key]:.2f} {unit}", f"{figures['plain'][key]:.2f} {unit}", f"speed ({key.replace('_', ' ')})",
            f["vs_plain"]["mean"], interval=f["vs_plain"]["interval"], note=note))
    return rows


if __name__ == "__main__":
    sys.exit(main())
