"""Teacher labelling throughput on CPU: zhkd's RunInference handler vs `transformers.pipeline` at its best.

Both label the same rows of the bundled sentiment corpus (train split, in stored order) with the same
randomly initialised classifier (bert-base-shaped by default) and character tokenizer, saved to a
temporary checkpoint and loaded the way each contender loads it, in one process with the same torch
thread count. Timed end to end from raw strings to raw logits, tokenisation included, model loading
excluded (each contender first labels 16 rows that are not measured):

- zhkd: `TeacherTokenizer.encode` (one batched call) and the packing into `TeacherRow`s, `plan_batches`
  (length-sorted, token budget) and `TeacherHandler.run_inference` per batch, as `zhkd build` runs them
  on a group of rows (with the forward the build picks: the packed, padding-free one for a BERT
  classifier on CPU);
- zhkd, plain forward: the same, with the model's own forward on the padded batches (what the packed
  forward gains);
- pipeline: `pipeline("text-classification")(texts, batch_size=B, truncation=True,
  function_to_apply="none", top_k=None)`, the rows in the order given (as a user calls it), with B its
  best batch size: a sweep over --batch-sizes on the first --sweep-rows rows, in interleaved rounds,
  picks the fastest;
- pipeline, sorted: the same call with B on the same rows sorted by length (what a user could do to
  cut padding), its outputs put back in row order.

The rows are cut into --rounds blocks, each labelled by the four in turn (order alternating). All of
it runs at each of --threads torch thread counts (both sides alike; default 1, what `zhkd build` gives
each worker, and all cores, what `pipeline()` takes). The logits of the other three must equal zhkd's
within 1e-5 on every row, else the run fails (exit 1, recorded). Target (issue 14): zhkd >= 1.3x the
pipeline as called. Results: bench/results/label_bench.json.

Three figures set the comparison in context, per thread count:
- where the time goes: zhkd, its plain forward and the pipeline each label the first --profile-rows
  rows once under torch.profiler; the share of the wall time in matrix products, attention, GELU and
  LayerNorm, other torch operators, and outside torch's operators (Python) is recorded;
- zhkd's budget sweep: the handler at each of --budgets padded tokens per batch, on the sweep rows, in
  interleaved rounds (the build's CPU default, `BATCH_BUDGETS["cpu"]`, was chosen from it);
- the ceiling: the logits need the model's matrix products but for the last layer's outputs the head
  never reads (a sequence classifier reads each row's first token); their floating-point operations per
  row are counted from the model's shape and each row's token count (padding not counted). Dividing by
  the seconds gives each side's useful GFLOP/s (the pipeline also does the unread part, about 1/14 of
  a 12-layer model's products at these lengths, which is not counted); the machine's float32 matrix
  product rate at that thread count (a 2,048 x 768 by 768 x 3,072 product, the best of several, by
  `torch.mm` and by oneDNN) bounds any labeller of this model. Its ratio to the pipeline's achieved
  rate is the most any labeller could beat the pipeline by on this CPU without skipping needed work.

    python bench/label_bench.py [--rows 1000] [--shape bert-base] [--rounds 4] [--threads 1,2] [--profile-rows 64]
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
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchlib import RESULTS, interleave, meta, rate_ratio, summary_row, write_result  # noqa: E402

LABELS = ["negative", "positive"]
MAX_LENGTH = 512
TOLERANCE = 1e-5
TARGET = 1.3


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


class ZhkdLabeller:
    """zhkd's tokenizer, batch planner and RunInference handler, as the build's FormBatches/Teacher run them;
    `forward="plain"` makes the handler run the model's own forward on the padded batches."""

    def __init__(self, teacher: Path, batch_tokens: int, max_rows: int, threads: int, forward: str = "auto") -> None:
        from zhkd.pipelines.teacher import TeacherHandler, TeacherTokenizer

        self.tokenizer = TeacherTokenizer(str(teacher), "classification", MAX_LENGTH)
        self.handler = TeacherHandler(str(teacher), "classification", device="cpu", threads=threads,
                                      pad_token_id=self.tokenizer.tokenizer.pad_token_id, forward=forward)
        self.model = self.handler.load_model()
        self.forward = self.model.forward  # what ran: packed or plain
        self.batch_tokens, self.max_rows = batch_tokens, max_rows

    @staticmethod
    def variants(texts: list[str]) -> list:
        from zhkd.augment.example import Variant

        return [Variant(f"{i:06d}", f"{i:06d}", t, None, None, None, None, (), True) for i, t in enumerate(texts)]

    def lengths(self, texts: list[str]) -> list[int]:
        """Each row's token count, as the teacher sees it."""
        return [len(e.input_ids) for e in self.tokenizer.encode(self.variants(texts))]

    def padded_share(self, texts: list[str]) -> float:
        """The share of pad tokens in the padded batches these rows are cut into."""
        from types import SimpleNamespace

        from zhkd.pipelines.teacher import plan_batches

        rows = [SimpleNamespace(id=f"{i:06d}", length=n) for i, n in enumerate(self.lengths(texts))]
        batches = plan_batches(rows, batch_tokens=self.batch_tokens, max_rows=self.max_rows)
        padded = sum(len(b) * max(r.length for r in b) for b in batches)
        return 1 - sum(r.length for r in rows) / padded

    def __call__(self, texts: list[str]):
        import numpy as np

        from zhkd.pipelines.teacher import plan_batches
        from zhkd.pipelines.wire import TeacherRow

        variants = self.variants(texts)
        rows = [TeacherRow.make(v, e, b"", None) for v, e in zip(variants, self.tokenizer.encode(variants),
                                                                  strict=True)]
        logits = {}
        for batch in plan_batches(rows, batch_tokens=self.batch_tokens, max_rows=self.max_rows):
            for result in self.handler.run_inference(batch, self.model):
                logits[result.example.id] = result.inference
        return np.stack([logits[r.id] for r in rows])


class PipelineLabeller:
    """`transformers.pipeline("text-classification")`, raw logits, rows as given or sorted by length."""

    def __init__(self, teacher: Path) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=str(teacher), tokenizer=str(teacher), device=-1)
        self.index = {name: i for i, name in enumerate(LABELS)}

    def __call__(self, texts: list[str], batch_size: int, sort: bool = False):
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort else list(range(len(texts)))
        scored = self.pipe([texts[i] for i in order], batch_size=batch_size, truncation=True, max_length=MAX_LENGTH,
                           function_to_apply="none", top_k=None)
        logits = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        for i, row in zip(order, scored, strict=True):
            for entry in row:
                logits[i, self.index[entry["label"]]] = entry["score"]
        return logits


def budget_sweep(teacher: Path, texts: list[str], budgets: list[int], args, threads: int) -> dict[int, float]:
    """zhkd's rows/s at each token budget, on the same rows, in interleaved rounds."""
    parts = blocks_of(texts, args.sweep_rounds)
    labellers = {b: ZhkdLabeller(teacher, b, args.max_batch_rows, threads) for b in budgets}

    def at(budget: int):
        return lambda r: (labellers[budget](parts[r]), {"rows": len(parts[r])})[1]

    timed = interleave(len(parts), {b: at(b) for b in budgets})
    rates = {b: sum(r["rows"] for r in timed[b]) / sum(r["seconds"] for r in timed[b]) for b in budgets}
    print(f"{threads} thread(s), zhkd budget sweep: " + ", ".join(f"{b}: {v:.1f} rows/s" for b, v in rates.items()),
          file=sys.stderr, flush=True)
    return rates


def row_flops(config, lengths: list[int]) -> float:
    """Floating-point operations a BERT sequence classifier's logits need over rows of these token counts,
    padding not counted: per token and layer the four attention projections and the feed-forward pair
    (2 x multiply-adds), per row and layer the attention scores and their weighted sum (2 x 2 x length^2
    x hidden); in the last layer only the keys and values of every token and the rest for the first
    token, the one the head reads."""
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * (4 * hidden * hidden + 2 * hidden * inner)
    first_token_rest = 2 * (2 * hidden * hidden + 2 * hidden * inner)  # query, output, feed-forward
    return float(sum(per_token * n * (layers - 1) + 4 * n * n * hidden * (layers - 1)
                     + 2 * 2 * hidden * hidden * n + first_token_rest + 4 * n * hidden for n in lengths))


def matmul_gflops(threads: int, repeats: int = 20) -> float:
    """This CPU's float32 matrix product rate at `threads` torch threads: the best of `repeats` products of
    the feed-forward's shape over 2,048 tokens (bert-base), after a warm-up, by torch's `mm` (MKL on x86)
    and by oneDNN's linear where torch has it (the packed forward's), whichever is faster."""
    import torch

    from zhkd.pipelines.packed_forward import OneDnnProducts

    torch.set_num_threads(threads)
    a, weight = torch.randn(2048, 768), torch.randn(3072, 768)
    products = [lambda: torch.mm(a, weight.t())]
    if OneDnnProducts.available():
        products.append(lambda: OneDnnProducts.linear(a, weight, None))
    best = float("inf")
    for product in products:
        for _ in range(3):
            product()
        for _ in range(repeats):
            started = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - started)
    return 2 * 2048 * 768 * 3072 / best / 1e9


def ceiling(flops: float, sides: dict, threads: int) -> dict:
    """Each side's useful GFLOP/s and the most any labeller could beat the pipeline by on this CPU."""
    peak = matmul_gflops(threads)
    achieved = {name: flops / side["seconds"] / 1e9 for name, side in sides.items()}
    return {"row_gflop": flops / 1e9, "matmul_peak_gflops": peak, "achieved_gflops": achieved,
            "most_possible_vs_pipeline": peak / achieved["pipeline"]}


def blocks_of(items: list, count: int) -> list[list]:
    size = -(-len(items) // count)
    return [items[at:at + size] for at in range(0, len(items), size)]


def sweep(pipe: PipelineLabeller, texts: list[str], batch_sizes: list[int], rounds: int) -> dict[int, float]:
    """The pipeline's rows/s at each batch size, on the same rows, in interleaved rounds."""
    parts = blocks_of(texts, rounds)

    def at(batch_size: int):
        return lambda r: (pipe(parts[r], batch_size), {"rows": len(parts[r])})[1]

    timed = interleave(len(parts), {b: at(b) for b in batch_sizes})
    return {b: sum(r["rows"] for r in timed[b]) / sum(r["seconds"] for r in timed[b]) for b in batch_sizes}


# Where a labeller's time goes, by torch operator (self time): the rest of the wall time is spent outside
# torch's operators (Python: tokenisation, batching, the pipeline's pre- and post-processing).
PROFILE_PARTS = {
    "matrix products": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
                        "mkldnn::_linear_pointwise"),  # oneDNN's, with the GELU and residual adds fused into it
    "attention": ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::softmax", "aten::_softmax", "aten::_safe_softmax"),
    "GELU, LayerNorm, tanh": ("aten::gelu", "aten::layer_norm", "aten::native_layer_norm", "aten::tanh"),
}


def profile_shares(call) -> dict:
    """One call under torch.profiler: the share of its wall time in each of PROFILE_PARTS, in the other
    torch operators (adds, copies, gathers, embeddings) and outside torch's operators."""
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    wall = time.perf_counter() - started
    seconds = {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}
    shares = {part: sum(seconds.get(name, 0.0) for name in names) / wall for part, names in PROFILE_PARTS.items()}
    shares["other torch operators"] = sum(seconds.values()) / wall - sum(shares.values())
    shares["outside torch operators"] = max(0.0, 1 - sum(seconds.values()) / wall)
    return {"seconds": wall, "shares": shares}


def main() -> int:
    import torch

    from zhkd.pipelines.build_config import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_BATCH_ROWS
    from zhkd.pipelines.corpora import load_corpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--shape", default="bert-base")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (blocks of the rows)")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64", help="the pipeline's batch sizes to sweep")
    parser.add_argument("--sweep-rows", type=int, default=256)
    parser.add_argument("--sweep-rounds", type=int, default=2)
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}",
                        help="torch thread counts to compare at, comma-separated (both sides alike): 1 is what "
                             "`zhkd build` gives each worker by default, all cores what pipeline() takes")
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS,
                        help="zhkd's padded tokens per batch in the comparison (default: the build's on CPU)")
    parser.add_argument("--budgets", default="256,512,768,1024,2048",
                        help="zhkd's budgets to sweep on the sweep rows, comma-separated")
    parser.add_argument("--max-batch-rows", type=int, default=DEFAULT_MAX_BATCH_ROWS)
    parser.add_argument("--profile-rows", type=int, default=64,
                        help="rows each contender labels once under torch.profiler, per thread count (0: none)")
    parser.add_argument("--out", type=Path, default=RESULTS / "label_bench.json")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()

    corpus = [r["text"] for r in load_corpus("chnsenti", "train")]
    texts, warm = corpus[: args.rows], corpus[-16:]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    result: dict = {"shape": args.shape, "rows": len(texts), "mean_chars": sum(map(len, texts)) / len(texts),
                    "batch_tokens": args.batch_tokens, "max_batch_rows": args.max_batch_rows, "tolerance": TOLERANCE,
                    "by_threads": {}, "summary": []}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="zhkd-label-bench-") as tmp:
        teacher = make_teacher(args.shape, Path(tmp), corpus)
        for threads in [int(t) for t in str(args.threads).split(",")]:
            torch.set_num_threads(threads)
            figures = compare(teacher, texts, warm, batch_sizes, threads, args)
            result["by_threads"][str(threads)] = figures
            failed += [f"{threads} threads, {name}: max |logit difference| {d:.2e} > {TOLERANCE:g}"
                       for name, d in figures["max_abs_logit_diff"].items() if d > TOLERANCE]
            result["summary"] += summary_rows(figures, threads, args)
    result["failed"] = failed or None
    result["meta"] = meta("label_bench", started, load_before, device="cpu")
    write_result(args.out, result)
    if failed:
        print("label_bench FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def compare(teacher: Path, texts: list[str], warm: list[str], batch_sizes: list[int], threads: int, args) -> dict:
    """The sweep and the interleaved comparison at one torch thread count (both sides)."""
    import numpy as np

    ours = ZhkdLabeller(teacher, args.batch_tokens, args.max_batch_rows, threads)
    plain = ZhkdLabeller(teacher, args.batch_tokens, args.max_batch_rows, threads, forward="plain")
    pipe = PipelineLabeller(teacher)
    ours(warm)
    plain(warm)
    pipe(warm, 1)
    budgets = budget_sweep(teacher, texts[: args.sweep_rows], [int(b) for b in args.budgets.split(",")],
                           args, threads)
    swept = sweep(pipe, texts[: args.sweep_rows], batch_sizes, args.sweep_rounds)
    best = max(swept, key=swept.get)
    print(f"{threads} thread(s), pipeline batch sweep: " + ", ".join(f"{b}: {v:.1f} rows/s" for b, v in swept.items())
          + f" -> best {best}", file=sys.stderr, flush=True)
    parts = blocks_of(texts, args.rounds)
    calls = {"zhkd": lambda block: ours(block), "zhkd_plain": lambda block: plain(block),
             "pipeline": lambda block: pipe(block, best), "pipeline_sorted": lambda block: pipe(block, best, sort=True)}
    got: dict[str, list] = {name: [] for name in calls}

    def contender(name: str):
        def one_round(r: int) -> dict:
            got[name].append(calls[name](parts[r]))
            return {"rows": len(parts[r])}
        return one_round

    timed = interleave(len(parts), {name: contender(name) for name in calls})
    logits = {name: np.concatenate(chunks) for name, chunks in got.items()}
    sides = {name: {"rows": sum(r["rows"] for r in rounds), "seconds": sum(r["seconds"] for r in rounds),
                    "rows_per_s": sum(r["rows"] for r in rounds) / sum(r["seconds"] for r in rounds)}
             for name, rounds in timed.items()}
    flops = row_flops(ours.model.model.config, ours.lengths(texts))
    figures = {
        "zhkd_budget_sweep_rows_per_s": {str(b): v for b, v in budgets.items()},
        "pipeline_sweep_rows_per_s": {str(b): v for b, v in swept.items()}, "pipeline_best_batch_size": best,
        "ceiling": ceiling(flops, sides, threads),
        "contenders": sides, "vs_pipeline": rate_ratio(timed["zhkd"], timed["pipeline"], "rows"),
        "vs_pipeline_sorted": rate_ratio(timed["zhkd"], timed["pipeline_sorted"], "rows"),
        "vs_plain_forward": rate_ratio(timed["zhkd"], timed["zhkd_plain"], "rows"),
        "forward": ours.forward, "padded_share": sum(plain.padded_share(p) * len(p) for p in parts) / len(texts),
        "max_abs_logit_diff": {name: float(np.abs(logits["zhkd"] - logits[name]).max())
                               for name in ("zhkd_plain", "pipeline", "pipeline_sorted")},
    }
    if args.profile_rows:
        rows = texts[: args.profile_rows]
        figures["profile"] = {name: profile_shares(lambda call=call: call(rows)) for name, call in calls.items()
                              if name != "pipeline_sorted"}
    for name, side in sides.items():
        print(f"{threads} thread(s), {name:16s} {side['rows_per_s']:8.1f} rows/s ({side['seconds']:.1f} s)",
              file=sys.stderr)
    print(f"{threads} thread(s): zhkd ({ours.forward} forward) / pipeline(batch {best}) = "
          f"{figures['vs_pipeline']['ratio']:.2f}x (target >= {TARGET}x); sorted: "
          f"{figures['vs_pipeline_sorted']['ratio']:.2f}x; over the plain forward: "
          f"{figures['vs_plain_forward']['ratio']:.2f}x",
          file=sys.stderr, flush=True)
    for name, profiled in figures.get("profile", {}).items():
        print(f"{threads} thread(s), profile of {name}: " + ", ".join(
            f"{part} {share:.0%}" for part, share in profiled["shares"].items()), file=sys.stderr, flush=True)
    return figures


def summary_rows(figures: dict, threads: int, args) -> list[dict]:
    sides, best, diffs = figures["contenders"], figures["pipeline_best_batch_size"], figures["max_abs_logit_diff"]
    as_called, sorted_, plain = figures["vs_pipeline"], figures["vs_pipeline_sorted"], figures["vs_plain_forward"]
    top, budgets = figures["ceiling"], figures["zhkd_budget_sweep_rows_per_s"]
    where = f"label on CPU ({args.shape}, {threads} torch thread{'s' if threads > 1 else ''} both)"
    ours = f"{sides['zhkd']['rows_per_s']:.1f} rows/s"
    return [
        summary_row(f"{where}: zhkd handler vs pipeline(batch_size={best}), rows as given", ours,
                    f"{sides['pipeline']['rows_per_s']:.1f} rows/s", "rows/s", as_called["ratio"],
                    interval=as_called["round_ratio_interval"], target=TARGET,
                    note=(f"{args.rows} rows; zhkd's {figures['forward']} forward; pipeline's best of batch sizes "
                          f"{args.batch_sizes} on {args.sweep_rows} rows; zhkd's budget {args.batch_tokens} tokens; "
                          f"max logit difference {diffs['pipeline']:.1e}")),
        summary_row(f"{where}: zhkd handler vs pipeline(batch_size={best}), rows sorted by length", ours,
                    f"{sides['pipeline_sorted']['rows_per_s']:.1f} rows/s", "rows/s", sorted_["ratio"],
                    interval=sorted_["round_ratio_interval"],
                    note=f"max logit difference {diffs['pipeline_sorted']:.1e}"),
        summary_row(f"{where}: zhkd's {figures['forward']} forward vs the model's own forward, same padded batches",
                    ours, f"{sides['zhkd_plain']['rows_per_s']:.1f} rows/s", "rows/s", plain["ratio"],
                    interval=plain["round_ratio_interval"],
                    note=(f"{figures['padded_share']:.0%} of the padded batches' tokens are padding; max logit "
                          f"difference {diffs['zhkd_plain']:.1e}")),
        summary_row(f"{where}: the most any labeller could reach vs pipeline(batch_size={best})",
                    f"{top['matmul_peak_gflops']:.0f} GFLOP/s (float32 matrix products)",
                    f"{top['achieved_gflops']['pipeline']:.0f} GFLOP/s useful", "GFLOP/s",
                    top["most_possible_vs_pipeline"],
                    note=(f"zhkd reached {top['achieved_gflops']['zhkd']:.0f} GFLOP/s useful; "
                          f"{top['row_gflop']:.0f} GFLOP of needed matrix products over the {args.rows} rows; zhkd's "
                          "budget sweep " + ", ".join(f"{b}: {v:.1f}" for b, v in budgets.items()) + " rows/s"
                          + profile_note(figures.get("profile")))),
    ]


def profile_note(profile: dict | None) -> str:
    """The profiled share of each side's time in matrix products (empty without a profile)."""
    if not profile:
        return ""
    return "; time in matrix products (profiled): " + ", ".join(
        f"{name} {p['shares']['matrix products']:.0%}" for name, p in profile.items())

if __name__ == "__main__":
    sys.exit(main())
