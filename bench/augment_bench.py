"""Augmentation bench: zhkd's operators against nlpcda and jionlp, and batched `mlm` against a TinyBERT loop.

Rows: the first --sentences reviews of the bundled sentiment train split; every tool is asked for
--num-aug outputs per row (nlpcda's first output is its input and is not counted). Each comparison
runs in --rounds interleaved rounds: the rows are cut into that many blocks, and each block is
augmented by zhkd and by the peer in turn (the order alternating), in this one process, so both meet
the same machine load; every row is augmented exactly once by each side. One-time loading is excluded:
each tool first augments --warm-up rows that are not among the measured ones.

Equal change rates are equal observed shares, not equal settings: a rate means something different
to each tool (zhkd's is per eligible unit: synonym 0.2 of the replaceable words, homophone 0.1 of the
replaceable characters, eda 0.1 of the movable words; nlpcda's is per character or word it meets), so
the same number changed about twice as many characters for nlpcda's Homophone and Similarword as for
zhkd. The peer keeps its setting (zhkd's default rate, as its `change_rate` / ratio), and zhkd's rate
is calibrated to it before the timed rounds: on an even sample of the measured rows
(--calibration-rows of them), the peer's share of characters changed per output (1 - matched / longer
length, difflib's matching blocks) is the target, and zhkd's rate is bisected (starting from its
default) until its share is within SHARE_TOLERANCE of it. One side is moved, and it is zhkd, so the
peer runs exactly as before and as its users call it. The calibration runs in a forked child, so its
work leaves nothing behind for the timed rounds (no segmentation or word cache warmed on the measured
rows, no draw from nlpcda's global random state). Both rates, the calibration's shares and the shares
measured on the timed outputs are recorded; a comparison whose timed shares differ by more than the
tolerance says so in its note.

Speed is distinct outputs per second, wall time (CPU time of this process beside it), zhkd's including
its jieba segmentation: a policy segments each row once, as the peers that segment (Similarword) do.
Quality, on the same outputs, for both sides: the share that gain a rare character (a CJK character
absent from the input and outside GB2312 level 1), change the number of negators (不 没 无 非 别 未 莫 勿),
are identical to the input, or gain a non-CJK character the input lacks (junk symbols, newlines).

MLM: zhkd's batched operator against a TinyBERT-style loop (one forward per CJK word at batch 1 over
"masked sentence [SEP] original", full-vocabulary logits), both with the same randomly initialised
bert-base-shaped masked LM; block by block, the loop runs on the block's rows for its share of
--loop-budget seconds (it needs 0.2-2 s per word), and its cost per forwarded token projects its time
for all the rows (the note in the result says so). Results: bench/results/augment_bench.json.

    python bench/augment_bench.py [--sentences 500] [--num-aug 20] [--rounds 10] [--calibration-rows 200]
                                  [--only synonym,homophone,eda:swap] [--skip-jionlp] [--skip-mlm]
"""

from __future__ import annotations

import argparse
import difflib
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchlib import RESULTS, interleave, meta, rate_ratio, summary_row, write_result  # noqa: E402

from zhkd.augment.charset import NEGATORS, common_chars, is_cjk, is_cjk_word  # noqa: E402
from zhkd.augment.example import Example  # noqa: E402
from zhkd.augment.policy import OPTIONS, make_policy  # noqa: E402
from zhkd.augment.segment import segmenter  # noqa: E402
from zhkd.pipelines.corpora import load_corpus  # noqa: E402

# zhkd operator, its peer, the speed target (zhkd / peer outputs per second).
PAIRS = (
    ("synonym", "nlpcda.Similarword", 1.0),
    ("homophone", "nlpcda.Homophone", 1.0),
    ("homophone", "jionlp.homophone_substitution", 10.0),
    ("eda:swap", "nlpcda.CharPositionExchange", 1.0),
    ("eda:swap", "jionlp.swap_char_position", 10.0),
    ("eda:delete", "nlpcda.RandomDeleteChar", 1.0),
    ("eda:delete", "jionlp.random_add_delete (delete only)", 10.0),
    ("eda:insert", "jionlp.random_add_delete (add only)", 10.0),
)
SOLO = ("mask", "ngram", "convert:s2t", "convert:s2tw")   # no peer does these
RARE_TARGET = {"homophone": 0.05}
RARE_DEFAULT_TARGET = 0.02
NEGATOR_EXEMPT = ("ngram", "eda:delete", "mask", "convert:s2t", "convert:s2tw")
CHANGE_SAMPLE = 2000
SHARE_TOLERANCE = 0.05   # zhkd's share of characters changed within 5% (relative) of the peer's
CALIBRATION_STEPS = 10   # bisection steps at most (rates 1/1024 apart), fewer once within a quarter of it
TOP_K = 15
WARM_UP = "热身的句子，服务很好，房间干净"


def rate_of(spec: str) -> float:
    """zhkd's default policy rate for an operator, the number the peer is given."""
    return OPTIONS[spec.partition(":")[0]]["p"]


def quality(pairs: list[tuple[str, str]]) -> dict:
    common = common_chars()
    rare = neg = same = junk = 0
    for src, out in pairs:
        new = set(out) - set(src)
        rare += any(is_cjk(c) and c not in common for c in new)
        neg += sum(out.count(c) for c in NEGATORS) != sum(src.count(c) for c in NEGATORS)
        same += out == src
        junk += any(not is_cjk(c) for c in new - set("[MASK]"))
    n = max(1, len(pairs))
    return {"rare": rare / n, "negator": neg / n, "identical": same / n, "junk": junk / n}


def change_share(pairs: list[tuple[str, str]]) -> float:
    """Mean share of characters an output changes, on an even sample of the pairs."""
    step = max(1, len(pairs) // CHANGE_SAMPLE)
    shares = []
    for src, out in pairs[::step]:
        matched = sum(b.size for b in difflib.SequenceMatcher(None, src, out, autojunk=False).get_matching_blocks())
        shares.append(1 - matched / max(1, len(src), len(out)))
    return sum(shares) / max(1, len(shares))


def samples(pairs: list[tuple[str, str]], count: int = 10) -> list[dict]:
    rng = random.Random(7)
    chosen = rng.sample(range(len(pairs)), min(count, len(pairs)))
    return [{"input": pairs[i][0][:120], "output": pairs[i][1][:120]} for i in sorted(chosen)]


def zhkd_tool(spec: str, num_aug: int, warm: list[str], rate: float | None = None):
    """A callable(rows) -> (text, output) pairs, running zhkd's policy restricted to one operator (at
    `rate` instead of its default rate when given)."""
    policy = make_policy("classification", num_aug=num_aug, ops=[spec], seed=0,
                         rates=None if rate is None else {spec: rate})
    policy.load()
    policy.variants_batch([Example(f"warm-{n}", t) for n, t in enumerate(warm)])

    def run(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
        examples = [Example(row_id, text) for row_id, text in rows]
        return [(e.text, v.text) for e, variants in zip(examples, policy.variants_batch(examples), strict=True)
                for v in variants[1:]]

    return run


def peer_tool(name: str, spec: str, num_aug: int, warm: list[str]):
    """A callable(rows) -> (text, output) pairs for a peer, at zhkd's rate for the operator."""
    rate = rate_of(spec)
    n = num_aug + 1   # nlpcda's first output is its input
    if name.startswith("nlpcda."):
        import nlpcda

        cls = getattr(nlpcda, name.split(".")[1])
        options = {"char_gram": 3} if cls is nlpcda.CharPositionExchange else {}
        tool = cls(create_num=n, change_rate=rate, **options)

        def augment(text: str) -> list[str]:
            return tool.replace(text)[1:]
    else:
        import jionlp

        if name == "jionlp.homophone_substitution":
            def augment(text: str) -> list[str]:
                return jionlp.homophone_substitution(text, augmentation_num=num_aug, homo_ratio=rate)
        elif name == "jionlp.swap_char_position":
            def augment(text: str) -> list[str]:
                return jionlp.swap_char_position(text, augmentation_num=num_aug, swap_ratio=rate)
        else:
            add, delete = (0.0, rate) if "delete only" in name else (rate, 0.0)

            def augment(text: str) -> list[str]:
                return jionlp.random_add_delete(text, augmentation_num=num_aug, add_ratio=add, delete_ratio=delete)
    for text in warm:
        augment(text)

    def run(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(text, out) for _, text in rows for out in augment(text)]

    return run


def in_child(work, *args):
    """`work(*args)` run in a forked child, its result returned: what the child does (caches it fills, random
    state it draws) never reaches this process."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        try:
            send.send((True, work(*args)))
        except BaseException as err:   # the parent re-raises it
            send.send((False, f"{type(err).__name__}: {err}"))

    process = context.Process(target=child)
    process.start()
    ok, value = receive.recv()
    process.join()
    if not ok:
        raise RuntimeError(f"calibration failed: {value}")
    return value


def calibrate(spec: str, peer_run, rows: list[tuple[str, str]], num_aug: int) -> dict:
    """zhkd's rate for `spec` at which its share of characters changed matches the peer's on `rows` (see
    the module docstring): bisection from the default rate, stopped once within a quarter of
    SHARE_TOLERANCE (the measured rows are a larger sample than these, and their share moves a little),
    else the closest rate tried after CALIBRATION_STEPS."""
    target = change_share(peer_run(rows))
    lo, hi, rate = 0.0, 1.0, rate_of(spec)
    tried = []
    for _ in range(CALIBRATION_STEPS):
        share = change_share(zhkd_tool(spec, num_aug, [], rate)(rows))
        tried.append((abs(share - target), rate, share))
        if abs(share - target) <= SHARE_TOLERANCE / 4 * target:
            break
        lo, hi = (rate, hi) if share < target else (lo, rate)
        rate = round((lo + hi) / 2, 4)
    _, rate, share = min(tried)
    return {"rows": len(rows), "peer_share": target, "zhkd_rate": rate, "zhkd_share": share, "steps": len(tried)}


def profile(spec: str, num_aug: int, warm: list[str], blocks: list[list[tuple[str, str]]], rate: float | None,
            top: int = 15) -> dict:
    """cProfile of zhkd's policy for one operator (at the rate its nlpcda comparison ran, if any) over the
    rows, block by block as the timed rounds ran them, after the same warm-up: where its time goes.
    Phases: jieba segmentation (`Segmenter.segment`, cumulative), the operator's per-sentence plan (its
    words' slots and candidate tables, remembered per sentence), and the rest (the outputs themselves)."""
    import cProfile
    import pstats

    from zhkd.augment.jieba_cut import _viterbi_words

    rows = [row for block in blocks for row in block]
    _viterbi_words.cache_clear()   # segmentation alone, as a first sight of these rows would cost it
    clock = time.process_time()
    for _, text in rows:
        segmenter().segment(text)
    segmentation_cpu = (time.process_time() - clock) / max(1, len(rows))
    run = zhkd_tool(spec, num_aug, warm, rate)
    profiler = cProfile.Profile(time.process_time)   # CPU time: a busy machine pre-empts at random
    profiler.enable()
    outputs = sum(len(run(block)) for block in blocks)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(1e-12, sum(t for (_, _, t, _, _) in stats.stats.values()))   # own times add up to the run

    def cumulative(file_end: str, function: str) -> float:
        return sum(ct for (f, _, name), (_, _, _, ct, _) in stats.stats.items()
                   if f.endswith(file_end) and name == function)

    seg = cumulative("augment/segment.py", "segment")
    # The per-sentence plan: each sentence's word layout (a look-up per word, the per-word tables made on
    # a miss), with everything it calls; and the plans made from it, by their own time (what they call is
    # the layout, counted already).
    plan = sum(ct if name in ("_words", "_swap_plan") else tt
               for (f, _, name), (_, _, tt, ct, _) in stats.stats.items()
               if name in ("_words", "_swap_plan", "_batch_plan", "_slots", "_plan", "swap_plan")
               and ("augment/ops" in f or "augment/batch" in f))
    ranked = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    return {"operator": spec, "rate": rate, "rows": len(rows), "outputs": outputs, "profiled_seconds": total,
            "segmentation_cpu_s_per_row": segmentation_cpu,
            "shares": {"segmentation": seg / total, "per_sentence_plan": plan / total,
                       "outputs": max(0.0, 1 - (seg + plan) / total)},
            "top_own_time": [{"function": f"{Path(f).name}:{line}({name})", "calls": calls, "own_s": round(own, 4),
                              "cumulative_s": round(cum, 4)}
                             for (f, line, name), (_, calls, own, cum, _) in ranked]}


def measure(tools: dict, blocks: list[list[tuple[str, str]]]) -> dict[str, dict]:
    """Interleaved rounds over the blocks; per tool: rounds (timings, counts) and all its pairs."""
    pairs: dict[str, list] = {name: [] for name in tools}

    def contender(name):
        def one_round(r: int) -> dict:
            out = tools[name](blocks[r])
            pairs[name] += out
            return {"inputs": len(blocks[r]), "outputs": len(out)}
        return one_round

    rounds = interleave(len(blocks), {name: contender(name) for name in tools})
    return {name: {"rounds": rounds[name], "pairs": pairs[name]} for name in tools}


def side(figures: dict) -> dict:
    rounds, pairs = figures["rounds"], figures["pairs"]
    seconds = sum(r["seconds"] for r in rounds)
    return {"inputs": sum(r["inputs"] for r in rounds), "outputs": len(pairs), "seconds": seconds,
            "cpu_seconds": sum(r["cpu_seconds"] for r in rounds), "outputs_per_s": len(pairs) / max(1e-12, seconds),
            "change_share": change_share(pairs), "quality": quality(pairs), "samples": samples(pairs)}


def quality_checks(spec: str, q: dict) -> dict:
    rare_target = None if spec.startswith("convert") else RARE_TARGET.get(spec, RARE_DEFAULT_TARGET)
    neg_target = None if spec in NEGATOR_EXEMPT else 0.01
    return {"rare_target": rare_target, "negator_target": neg_target,
            "rare_met": rare_target is None or q["rare"] <= rare_target,
            "negator_met": neg_target is None or q["negator"] <= neg_target}


# --- MLM -------------------------------------------------------------------------------------------------

def bert_base_mlm(out_dir: Path, texts: list[str], shape: str = "bert-base") -> Path:
    """A random masked LM (bert-base-shaped by default) with a character vocabulary of bert-base-chinese's
    size."""
    from zhkd.distill.students import build_model
    from zhkd.models import char_vocab, save_char_tokenizer

    vocab = char_vocab(texts)
    seen = set(vocab)
    extra = sorted(common_chars() - seen) + [chr(c) for c in range(0x4E00, 0xA000) if chr(c) not in seen]
    vocab += [c for c in dict.fromkeys(extra) if c not in seen][: 21128 - len(vocab)]
    tokenizer = save_char_tokenizer(vocab, out_dir)
    model = build_model(shape, kind="mlm", vocab_size=len(vocab), pad_token_id=tokenizer.pad_token_id, seed=0)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def loop_plan(text: str) -> tuple[list[str], list[tuple[int, int, int]]]:
    """The loop's words, and (word index, character position, size) of each word it forwards: every CJK
    word (TinyBERT's `_is_valid`, read for Chinese) inside the first 254 characters."""
    words = [w for w in segmenter().words(text) if w.strip()]
    plan, pos = [], 0
    for n, word in enumerate(words):
        size = sum(1 for c in word if not c.isspace())
        if is_cjk_word(word) and pos + size <= 254:
            plan.append((n, pos, size))
        pos += size
    return words, plan


def loop_row_length(words: list[str]) -> int:
    return 3 + 2 * min(254, sum(1 for w in words for c in w if not c.isspace()))


class TinyBertLoop:
    """TinyBERT's data_augmentation.py, for Chinese: every CJK word of a sentence gets its own forward
    (batch 1) over `[CLS] sentence-with-the-word-masked [SEP] sentence [SEP]`, full-vocabulary logits
    at every position, top-K candidates at the masked positions; then N outputs replace each word with
    p=0.4."""

    def __init__(self, model_dir: Path) -> None:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
        self.model = transformers.AutoModelForMaskedLM.from_pretrained(str(model_dir), use_safetensors=True).eval()
        self.vocab = self.tokenizer.get_vocab()
        self.rng = random.Random(0)

    def sentence(self, text: str, num_aug: int, deadline: float) -> tuple[int, int, bool]:
        """(words forwarded, tokens forwarded, finished before the deadline)."""
        import torch

        t = self.tokenizer
        words, plan = loop_plan(text)
        ids = [self.vocab.get(c, t.unk_token_id) for w in words for c in w if not c.isspace()]
        candidates: dict[int, list[str]] = {}
        tokens = 0
        for n, pos, size in plan:
            if time.perf_counter() > deadline:
                return len(candidates), tokens, False
            masked = ids[:pos] + [t.mask_token_id] * size + ids[pos + size:]
            row = [t.cls_token_id] + masked[:254] + [t.sep_token_id] + ids[:254] + [t.sep_token_id]
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([row])).logits
            best = logits[0, 1 + pos: 1 + pos + size].topk(TOP_K, dim=-1).indices
            candidates[n] = ["".join(t.convert_ids_to_tokens(best[:, k].tolist())) for k in range(TOP_K)]
            tokens += len(row)
        for _ in range(num_aug):
            "".join(self.rng.choice(candidates[i]) if i in candidates and self.rng.random() < 0.4 else w
                    for i, w in enumerate(words))
        return len(candidates), tokens, True


def loop_tokens(texts: list[str]) -> int:
    """How many tokens the TinyBERT loop forwards for these sentences (to extrapolate its time)."""
    total = 0
    for text in texts:
        words, plan = loop_plan(text)
        total += len(plan) * loop_row_length(words)
    return total


def bench_mlm(texts: list[str], mlm_sentences: int, loop_budget: float, num_aug: int, block: int = 50,
              shape: str = "bert-base") -> dict:
    """zhkd's batched mlm on blocks of the subset, each block followed by the loop on the same block's
    sentences for its share of the budget: both see the same machine load (other work on a shared
    machine moves single timings by 3x), and the loop's cost per forwarded token projects its time."""
    import torch

    from zhkd.augment.ops.mlm import Mlm, loaded

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = bert_base_mlm(Path(tmp), texts, shape)
        subset = texts[:mlm_sentences]
        examples = [Example(f"m{n}", t) for n, t in enumerate(subset)]
        policy = make_policy("classification", num_aug=num_aug, ops=["mlm"], seed=0, mlm_model=str(model_dir))
        policy.load()
        policy.variants_batch([Example("warm-up", WARM_UP)])
        loop = TinyBertLoop(model_dir)
        loop.sentence("热身的句子，服务很好", num_aug, time.perf_counter() + 60)
        blocks = [examples[at:at + block] for at in range(0, len(examples), block)]
        zhkd_seconds = loop_seconds = 0.0
        loop_words = loop_tok = finished = 0
        pairs = []
        for chunk in blocks:
            start = time.perf_counter()
            for example, variants in zip(chunk, policy.variants_batch(chunk), strict=True):
                pairs += [(example.text, v.text) for v in variants[1:]]
            zhkd_seconds += time.perf_counter() - start
            start = time.perf_counter()
            deadline = start + loop_budget / len(blocks)
            for example in chunk:
                words, tok, done = loop.sentence(example.text, num_aug, deadline)
                loop_words, loop_tok, finished = loop_words + words, loop_tok + tok, finished + done
                if not done or time.perf_counter() > deadline:
                    break
            loop_seconds += time.perf_counter() - start
        op = Mlm(str(model_dir))
        rows = sum(len(op.rows(segmenter().segment(t), loaded(str(model_dir)))) for t in subset)
    per_token = loop_seconds / max(1, loop_tok)
    projected = per_token * loop_tokens(subset)
    return {
        "model": f"random {shape} shape, vocab 21128, char tokenizer",
        "torch_threads": torch.get_num_threads(), "blocks": len(blocks),
        "zhkd": {"inputs": len(subset), "sentences": len(subset), "seconds": zhkd_seconds, "outputs": len(pairs),
                 "rows_forwarded": rows,
                 "sentences_per_s": len(subset) / zhkd_seconds, "outputs_per_s": len(pairs) / zhkd_seconds},
        "tinybert_loop": {"inputs": finished, "sentences_finished": finished, "words": loop_words,
                          "tokens_forwarded": loop_tok,
                          "seconds": loop_seconds, "words_per_s": loop_words / max(1e-9, loop_seconds),
                          "seconds_per_token": per_token},
        "tinybert_loop_projected_seconds": projected,
        "speedup": projected / zhkd_seconds,
        "quality": quality(pairs), "samples": samples(pairs),
    }



# --- main ------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--num-aug", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (blocks of the rows)")
    parser.add_argument("--warm-up", type=int, default=20, help="rows (not measured) each tool augments first")
    parser.add_argument("--calibration-rows", type=int, default=200,
                        help="an even sample of the measured rows on which zhkd's rate is matched (in a forked "
                             "child) to the peer's share of characters changed")
    parser.add_argument("--only", help="comma-separated zhkd operators to measure (default: all)")
    parser.add_argument("--skip-jionlp", action="store_true", help="leave out the jionlp peers (slow)")
    parser.add_argument("--mlm-sentences", type=int, default=200)
    parser.add_argument("--mlm-shape", default="bert-base", help="shape of the random MLM (tests use mini)")
    parser.add_argument("--loop-budget", type=float, default=150.0,
                        help="seconds the TinyBERT loop may run (on a spread of the mlm subset)")
    parser.add_argument("--skip-mlm", action="store_true")
    parser.add_argument("--profile", default="homophone", help="operator to profile after the comparisons "
                        "(empty: none)")
    parser.add_argument("--out", type=Path, default=RESULTS / "augment_bench.json")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()

    corpus = [r["text"] for r in load_corpus("chnsenti", "train")]
    texts = corpus[: args.sentences]
    warm = corpus[-args.warm_up:] if args.warm_up else [WARM_UP]
    rows = [(f"s{n}", t) for n, t in enumerate(texts)]
    calibration_rows = rows[:: max(1, len(rows) // max(1, args.calibration_rows))][: args.calibration_rows]
    size = -(-len(rows) // args.rounds)
    blocks = [rows[at:at + size] for at in range(0, len(rows), size)]
    only = set(args.only.split(",")) if args.only else None
    segmenter().segment(WARM_UP)

    result: dict = {"comparisons": [], "solo": {}, "summary": []}
    for spec, peer, target in PAIRS:
        if only and spec not in only or args.skip_jionlp and peer.startswith("jionlp"):
            continue
        peer_run = peer_tool(peer, spec, args.num_aug, warm)
        calibration = in_child(calibrate, spec, peer_run, calibration_rows, args.num_aug)
        rate = calibration["zhkd_rate"]
        tools = {"zhkd": zhkd_tool(spec, args.num_aug, warm, rate), "peer": peer_run}
        measured = measure(tools, blocks)
        ours, theirs = side(measured["zhkd"]), side(measured["peer"])
        speed = rate_ratio(measured["zhkd"]["rounds"], measured["peer"]["rounds"], "outputs")
        ours["checks"] = quality_checks(spec, ours["quality"])
        matched = abs(ours["change_share"] - theirs["change_share"]) <= SHARE_TOLERANCE * theirs["change_share"]
        result["comparisons"].append({"operator": spec, "peer": peer, "rate": {"zhkd": rate, "peer": rate_of(spec)},
                                      "calibration": calibration, "share_tolerance": SHARE_TOLERANCE,
                                      "shares_matched": matched, "target": target,
                                      "zhkd": ours, "peer_side": theirs, "speed": speed})
        result["summary"].append(summary_row(
            f"augment {spec} vs {peer}", f"{ours['outputs_per_s']:,.0f} outputs/s",
            f"{theirs['outputs_per_s']:,.0f} outputs/s", "outputs/s", speed["ratio"],
            interval=speed["round_ratio_interval"], target=target,
            note=(f"rate {rate:g} vs {rate_of(spec):g} (zhkd's calibrated to the peer's share); chars changed "
                  f"{100 * ours['change_share']:.1f}% vs {100 * theirs['change_share']:.1f}%"
                  f"{'' if matched else ' (NOT matched within the tolerance)'}; "
                  f"rare {100 * ours['quality']['rare']:.1f}% vs "
                  f"{100 * theirs['quality']['rare']:.1f}%; negator changed {100 * ours['quality']['negator']:.1f}% vs "
                  f"{100 * theirs['quality']['negator']:.1f}%; CPU-time ratio {speed['ratio_cpu']:.2f}")))
        print(f"{spec:<11} {ours['outputs_per_s']:>9,.0f} out/s  {peer:<40} {theirs['outputs_per_s']:>9,.0f} out/s  "
              f"{speed['ratio']:.2f}x (rounds {speed['round_ratio_mean']:.2f} ± {speed['round_ratio_interval']:.2f}; "
              f"CPU {speed['ratio_cpu']:.2f}x)  changed {100 * ours['change_share']:.1f}% vs "
              f"{100 * theirs['change_share']:.1f}% (rate {rate:g} vs {rate_of(spec):g})", file=sys.stderr, flush=True)
    for spec in SOLO:
        if only and spec not in only:
            continue
        measured = measure({"zhkd": zhkd_tool(spec, args.num_aug, warm)}, blocks)
        ours = side(measured["zhkd"])
        ours["checks"] = quality_checks(spec, ours["quality"])
        result["solo"][spec] = ours
        print(f"{spec:<11} {ours['outputs_per_s']:>9,.0f} out/s (no peer)", file=sys.stderr, flush=True)
    if args.profile and (not only or args.profile in only):
        peer = next((c for c in result["comparisons"] if c["operator"] == args.profile
                     and c["peer"].startswith("nlpcda")), None)
        p = result["profile"] = profile(args.profile, args.num_aug, warm, blocks, peer and peer["rate"]["zhkd"])
        shares = ", ".join(f"{k.replace('_', ' ')} {100 * v:.0f}%" for k, v in p["shares"].items())
        print(f"profile of {args.profile}: {shares}", file=sys.stderr)
        note = "cProfile with CPU time, word caches warm from the comparison; top functions in the result file"
        if peer:
            peer_cpu = peer["peer_side"]["cpu_seconds"] / peer["peer_side"]["inputs"]
            p["peer_cpu_s_per_row"] = peer_cpu
            p["ceiling"] = peer_cpu / p["segmentation_cpu_s_per_row"]
            result["summary"].append(summary_row(
                f"augment {args.profile}: the most zhkd could reach vs {peer['peer']} if only segmenting cost",
                f"{1e6 * p['segmentation_cpu_s_per_row']:.0f} µs CPU per row to segment",
                f"{1e6 * peer_cpu:.0f} µs CPU per row for {args.num_aug} outputs", "CPU s per row", p["ceiling"],
                note="segmentation timed alone after the comparison, HMM cache cleared"))
        result["summary"].append(summary_row(
            f"augment {args.profile}: where zhkd's time goes", shares, "—", "share", None, note=note))
    if not args.skip_mlm:
        m = result["mlm"] = bench_mlm(texts, args.mlm_sentences, args.loop_budget, args.num_aug, shape=args.mlm_shape)
        result["summary"].append(summary_row(
            "augment mlm vs a TinyBERT-style loop", f"{m['zhkd']['sentences_per_s']:.2f} rows/s",
            f"{m['zhkd']['sentences'] / m['tinybert_loop_projected_seconds']:.3f} rows/s (projected)", "rows/s",
            m["speedup"], target=20.0,
            note=(f"{m['model']}; the loop finished {m['tinybert_loop']['sentences_finished']} of "
                  f"{m['zhkd']['sentences']} rows in its budget, its time for all is projected per forwarded token")))
        print(f"mlm: {m['speedup']:.1f}x the TinyBERT loop (projected)", file=sys.stderr)

    result["meta"] = meta("augment_bench", started, load_before, rows=len(rows), num_aug=args.num_aug,
                          rounds=len(blocks), warm_up_rows=len(warm), calibration_rows=len(calibration_rows))
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
