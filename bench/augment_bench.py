"""Augmentation bench: zhkd's operators against nlpcda and jionlp, and batched `mlm` against a TinyBERT loop.

Sentences: the first --sentences rows of the bundled sentiment train split, --num-aug outputs requested
per input from every tool (nlpcda and jionlp are asked for the same count). Speed is outputs per second
in one process, one-time loading excluded (each tool is warmed up first). zhkd's figure includes jieba
segmentation; the segmentation-shared figure divides the outputs by the time minus one segmentation
pass (a policy segments each sentence once for all its operators).

Quality, per operator, on the same outputs: the share that gain a rare character (a CJK character absent
from the input and outside GB2312 level 1), change the number of negators (不 没 无 非 别 未 莫 勿), are
identical to the input, or gain a non-CJK character the input lacks (junk symbols, newlines).

MLM: zhkd's batched operator against a faithful TinyBERT-style loop (one forward per CJK word at batch
1 over "masked sentence [SEP] original", full-vocabulary logits), both with the same randomly
initialised bert-base-shaped masked LM (char vocabulary padded to bert-base-chinese's 21,128 entries).
The subset is cut into blocks; after zhkd augments a block, the loop runs on the same block's sentences
for its share of --loop-budget seconds (it needs 0.2-2 s per word), so both meet the same machine load,
and the loop's measured cost per forwarded token projects its time for the whole subset.

Slow peers stop after --peer-budget seconds (their rate is taken over the sentences they finished).
Peers seed and mutate global state (jieba's global tokenizer, the global RNG), so they run after
zhkd's measurements. Results go to bench/results/augment_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from zhkd.augment.charset import NEGATORS, common_chars, is_cjk, is_cjk_word  # noqa: E402
from zhkd.augment.example import Example  # noqa: E402
from zhkd.augment.policy import make_policy  # noqa: E402
from zhkd.augment.segment import segmenter  # noqa: E402
from zhkd.pipelines.corpora import load_corpus  # noqa: E402

ZHKD_OPS = ("synonym", "homophone", "mask", "ngram", "eda:swap", "eda:delete", "eda:insert", "convert:s2t",
            "convert:s2tw")
# zhkd operator -> (nlpcda peer, jionlp peer) it is compared with.
PEERS = {
    "synonym": ("nlpcda.Similarword", None),
    "homophone": ("nlpcda.Homophone", "jionlp.homophone_substitution"),
    "eda:delete": ("nlpcda.RandomDeleteChar", "jionlp.random_add_delete"),
    "eda:swap": ("nlpcda.CharPositionExchange", "jionlp.swap_char_position"),
    "eda:insert": (None, "jionlp.random_add_delete"),
}
RARE_TARGET = {"homophone": 0.05}
RARE_DEFAULT_TARGET = 0.02
NEGATOR_EXEMPT = ("ngram", "eda:delete", "mask", "convert:s2t", "convert:s2tw")
TOP_K = 15


def quality(pairs: list[tuple[str, str]]) -> dict:
    common = common_chars()
    rare = neg = same = junk = 0
    for src, out in pairs:
        src_chars = set(src)
        new = set(out) - src_chars
        rare += any(is_cjk(c) and c not in common for c in new)
        neg += sum(out.count(c) for c in NEGATORS) != sum(src.count(c) for c in NEGATORS)
        same += out == src
        junk += any(not is_cjk(c) for c in new - set("[MASK]"))
    n = max(1, len(pairs))
    return {"rare": rare / n, "negator": neg / n, "identical": same / n, "junk": junk / n}


def samples(pairs: list[tuple[str, str]], count: int = 10) -> list[dict]:
    rng = random.Random(7)
    chosen = rng.sample(range(len(pairs)), min(count, len(pairs)))
    return [{"input": pairs[i][0][:120], "output": pairs[i][1][:120]} for i in sorted(chosen)]


def run_zhkd(spec: str, examples: list[Example], num_aug: int, mlm_model: str | None = None) -> tuple[float, list]:
    policy = make_policy("classification", num_aug=num_aug, ops=[spec.partition("@")[0]], seed=0,
                         mlm_model=mlm_model)
    policy.load()
    policy.variants_batch([Example("warm-up", "热身的句子，服务很好，房间干净")])
    start = time.perf_counter()
    pairs = []
    for at in range(0, len(examples), 256):
        chunk = examples[at:at + 256]
        for example, variants in zip(chunk, policy.variants_batch(chunk), strict=True):
            pairs += [(example.text, v.text) for v in variants[1:]]
    return time.perf_counter() - start, pairs


def peer_tools(num_aug: int) -> dict:
    """name -> callable(text) returning the augmented texts (the original excluded)."""
    import jionlp
    from nlpcda import CharPositionExchange, Homophone, RandomDeleteChar, Similarword

    n = num_aug + 1  # nlpcda's first output is the input itself
    similar = Similarword(create_num=n, change_rate=0.2)
    homophone = Homophone(create_num=n, change_rate=0.1)
    delete = RandomDeleteChar(create_num=n, change_rate=0.1)
    exchange = CharPositionExchange(create_num=n, change_rate=0.1, char_gram=3)
    return {
        "nlpcda.Similarword": lambda t: similar.replace(t)[1:],
        "nlpcda.Homophone": lambda t: homophone.replace(t)[1:],
        "nlpcda.RandomDeleteChar": lambda t: delete.replace(t)[1:],
        "nlpcda.CharPositionExchange": lambda t: exchange.replace(t)[1:],
        "jionlp.homophone_substitution": lambda t: jionlp.homophone_substitution(t, augmentation_num=num_aug,
                                                                                 homo_ratio=0.05),
        "jionlp.random_add_delete": lambda t: jionlp.random_add_delete(t, augmentation_num=num_aug,
                                                                       add_ratio=0.05, delete_ratio=0.05),
        "jionlp.swap_char_position": lambda t: jionlp.swap_char_position(t, augmentation_num=num_aug,
                                                                         swap_ratio=0.05),
    }


def run_peer(tool, texts: list[str], budget: float) -> tuple[float, list, int]:
    """Outputs for the sentences in order until done or past the time budget (slow peers stop early)."""
    tool("热身的句子，服务很好，房间干净")
    start = time.perf_counter()
    pairs, done = [], 0
    for t in texts:
        pairs += [(t, out) for out in tool(t)]
        done += 1
        if time.perf_counter() - start > budget:
            break
    return time.perf_counter() - start, pairs, done


# --- MLM -------------------------------------------------------------------------------------------------

def bert_base_mlm(out_dir: Path, texts: list[str]) -> Path:
    """A random bert-base-shaped masked LM with a character vocabulary of bert-base-chinese's size."""
    from zhkd.distill.students import build_model
    from zhkd.models import char_vocab, save_char_tokenizer

    vocab = char_vocab(texts)
    seen = set(vocab)
    extra = sorted(common_chars() - seen) + [chr(c) for c in range(0x4E00, 0xA000) if chr(c) not in seen]
    vocab += [c for c in dict.fromkeys(extra) if c not in seen][: 21128 - len(vocab)]
    tokenizer = save_char_tokenizer(vocab, out_dir)
    model = build_model("bert-base", kind="mlm", vocab_size=len(vocab), pad_token_id=tokenizer.pad_token_id, seed=0)
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


def bench_mlm(texts: list[str], mlm_sentences: int, loop_budget: float, num_aug: int, block: int = 50) -> dict:
    """zhkd's batched mlm on blocks of the subset, each block followed by the loop on the same block's
    sentences for its share of the budget: both see the same machine load (other work on a shared
    machine moves single timings by 3x), and the loop's cost per forwarded token projects its time."""
    import torch

    from zhkd.augment.ops.mlm import Mlm, loaded

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = bert_base_mlm(Path(tmp), texts)
        subset = texts[:mlm_sentences]
        examples = [Example(f"m{n}", t) for n, t in enumerate(subset)]
        policy = make_policy("classification", num_aug=num_aug, ops=["mlm"], seed=0, mlm_model=str(model_dir))
        policy.load()
        policy.variants_batch([Example("warm-up", "热身的句子，服务很好，房间干净")])
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
        "model": "random bert-base shape (12x768, vocab 21128), char tokenizer",
        "torch_threads": torch.get_num_threads(), "blocks": len(blocks),
        "zhkd": {"sentences": len(subset), "seconds": zhkd_seconds, "outputs": len(pairs), "rows_forwarded": rows,
                 "sentences_per_s": len(subset) / zhkd_seconds, "outputs_per_s": len(pairs) / zhkd_seconds},
        "tinybert_loop": {"sentences_finished": finished, "words": loop_words, "tokens_forwarded": loop_tok,
                          "seconds": loop_seconds, "words_per_s": loop_words / max(1e-9, loop_seconds),
                          "seconds_per_token": per_token},
        "tinybert_loop_projected_seconds": projected,
        "speedup": projected / zhkd_seconds,
        "quality": quality(pairs), "samples": samples(pairs),
    }


# --- report ----------------------------------------------------------------------------------------------

def fmt_pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=5000)
    parser.add_argument("--num-aug", type=int, default=20)
    parser.add_argument("--mlm-sentences", type=int, default=200)
    parser.add_argument("--loop-budget", type=float, default=150.0,
                        help="seconds the TinyBERT loop may run (on a spread of the mlm subset)")
    parser.add_argument("--peer-budget", type=float, default=120.0, help="seconds each peer may run")
    parser.add_argument("--skip-mlm", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "augment_bench.json")
    args = parser.parse_args()

    texts = [r["text"] for r in load_corpus("chnsenti", "train")][: args.sentences]
    examples = [Example(f"s{n}", t) for n, t in enumerate(texts)]
    load_before = os.getloadavg()
    segmenter().segment("热身")
    start = time.perf_counter()
    for t in texts:
        segmenter().segment(t)
    seg_seconds = time.perf_counter() - start
    print(f"{len(texts)} sentences, N={args.num_aug}; jieba segmentation alone: {seg_seconds:.2f} s "
          f"({len(texts) / seg_seconds:.0f} sentences/s)", file=sys.stderr)

    results: dict = {"zhkd": {}, "peers": {}}
    for spec in ZHKD_OPS:
        seconds, pairs = run_zhkd(spec, examples, args.num_aug)
        results["zhkd"][spec] = {"outputs": len(pairs), "seconds": seconds, "outputs_per_s": len(pairs) / seconds,
                                 "outputs_per_s_shared_segmentation": len(pairs) / max(1e-9, seconds - seg_seconds),
                                 "quality": quality(pairs), "samples": samples(pairs)}
        print(f"zhkd {spec}: {len(pairs)} outputs in {seconds:.1f} s", file=sys.stderr)
    if not args.skip_mlm:
        results["mlm"] = bench_mlm(texts, args.mlm_sentences, args.loop_budget, args.num_aug)
        print(f"mlm: {results['mlm']['speedup']:.1f}x the TinyBERT loop", file=sys.stderr)
    for name, tool in peer_tools(args.num_aug).items():
        seconds, pairs, done = run_peer(tool, texts, args.peer_budget)
        results["peers"][name] = {"sentences": done, "outputs": len(pairs), "seconds": seconds,
                                  "outputs_per_s": len(pairs) / seconds, "quality": quality(pairs),
                                  "samples": samples(pairs)}
        print(f"{name}: {len(pairs)} outputs for {done} sentences in {seconds:.1f} s", file=sys.stderr)

    rows = []
    print(f"\n{'operator':<14}{'outputs':>8}{'out/s':>9}{'out/s*':>9}{'rare':>8}{'neg':>8}{'same':>8}{'junk':>8}"
          f"  {'peer':<30}{'peer out/s':>11}{'ratio':>7} target")
    for spec, r in results["zhkd"].items():
        q = r["quality"]
        rare_target = RARE_TARGET.get(spec, RARE_DEFAULT_TARGET) if not spec.startswith("convert") else None
        neg_target = None if spec in NEGATOR_EXEMPT else 0.01
        checks = {"rare": rare_target is None or q["rare"] <= rare_target,
                  "negator": neg_target is None or q["negator"] <= neg_target}
        comparisons = []
        for peer, need in zip(PEERS.get(spec, (None, None)), (1.0, 10.0), strict=True):
            if peer:
                ratio = r["outputs_per_s"] / results["peers"][peer]["outputs_per_s"]
                ratio_shared = r["outputs_per_s_shared_segmentation"] / results["peers"][peer]["outputs_per_s"]
                comparisons.append({"peer": peer, "ratio": ratio, "ratio_shared_segmentation": ratio_shared,
                                    "target": need, "met": ratio >= need,
                                    "met_shared_segmentation": ratio_shared >= need})
        r.update(targets={"rare": rare_target, "negator": neg_target}, met=checks, comparisons=comparisons)
        first = comparisons[0] if comparisons else None
        line = (f"{spec:<14}{r['outputs']:>8}{r['outputs_per_s']:>9.0f}{r['outputs_per_s_shared_segmentation']:>9.0f}"
                f"{fmt_pct(q['rare']):>8}{fmt_pct(q['negator']):>8}{fmt_pct(q['identical']):>8}{fmt_pct(q['junk']):>8}")
        for c in comparisons or [None]:
            if c is None:
                rows.append(line)
                continue
            peer = results["peers"][c["peer"]]
            rows.append(f"{line if c is first else ' ' * len(line)}  {c['peer']:<30}{peer['outputs_per_s']:>11.0f}"
                        f"{c['ratio']:>7.2f} >={c['target']:.0f}x {'met' if c['met'] else 'MISSED'}")
    print("\n".join(rows))
    print("out/s* = with segmentation shared (time minus one segmentation pass)")
    print(f"\n{'peer':<32}{'outputs':>8}{'out/s':>9}{'rare':>8}{'neg':>8}{'same':>8}{'junk':>8}")
    for name, r in results["peers"].items():
        q = r["quality"]
        print(f"{name:<32}{r['outputs']:>8}{r['outputs_per_s']:>9.0f}{fmt_pct(q['rare']):>8}{fmt_pct(q['negator']):>8}"
              f"{fmt_pct(q['identical']):>8}{fmt_pct(q['junk']):>8}")
    if "mlm" in results:
        m, loop = results["mlm"], results["mlm"]["tinybert_loop"]
        print(f"\nmlm (random bert-base shape, {m['torch_threads']} threads, {m['blocks']} interleaved blocks): "
              f"zhkd batched {m['zhkd']['sentences']} sentences in {m['zhkd']['seconds']:.1f} s "
              f"({m['zhkd']['outputs']} outputs, {m['zhkd']['rows_forwarded']} rows); TinyBERT loop "
              f"{loop['words']} words ({loop['sentences_finished']} sentences finished) in {loop['seconds']:.1f} s "
              f"({loop['words_per_s']:.1f} words/s), projected to {m['zhkd']['sentences']} sentences: "
              f"{m['tinybert_loop_projected_seconds']:.0f} s ({m['tinybert_loop_projected_seconds'] / 60:.0f} min)")
        print(f"speed-up {m['speedup']:.1f}x (target >= 20x); mlm outputs: rare {fmt_pct(m['quality']['rare'])}, "
              f"negator {fmt_pct(m['quality']['negator'])}")
    print("\nsamples (input -> output):")
    for spec, r in list(results["zhkd"].items()) + ([("mlm", results["mlm"])] if "mlm" in results else []):
        print(f"  [{spec}]")
        for s in r["samples"]:
            print(f"    {s['input'][:60]}\n      -> {s['output'][:60]}")

    results["setup"] = {
        "machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "sentences": len(texts), "num_aug": args.num_aug, "segmentation_seconds": seg_seconds,
        "rates": {"zhkd": "policy defaults (synonym p=0.2, homophone 0.1, mask 0.1, eda 0.1, ngram 1..5)",
                  "nlpcda": "Similarword 0.2, Homophone 0.1, RandomDeleteChar 0.1, CharPositionExchange 0.1",
                  "jionlp": "homo_ratio 0.05, add/delete_ratio 0.05, swap_ratio 0.05"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nwritten {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
