"""Task policies: which operators, at what rates, chained how, and N distinct variants per example.

Default recipes (documented in docs/augment.md). Each variant draws one primary operator by weight;
after a non-convert primary, a Traditional-script conversion is chained with probability CHAIN_CONVERT.
`mlm` and `wordvec` join a default recipe only when their resource (--mlm-model, --wordvec) is given.
Variants equal to the original or to an earlier variant are dropped and another attempt is made, up to
`attempts` in all, so an example may yield fewer than N.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import NamedTuple

from zhkd.augment import ops as registry
from zhkd.augment.errors import AugmentError
from zhkd.augment.example import Example, Variant
from zhkd.augment.ids import VariantIds, variant_hexes
from zhkd.augment.rng import KeyedRandom, KeyedSeries, derive_rng
from zhkd.augment.segment import Segmented, segmenter, tokens_and_tags
from zhkd.tasks import get_task

AUGMENT_VERSION = 5   # bump when an operator's output for the same config and seed changes
CHAIN_CONVERT = 0.1
BATCH_ATTEMPTS = 16   # fewer attempts than this in a batch are made one by one (numpy's call overhead)
_UNSEEN = object()   # a (chain, side) whose attempts are not made yet

# Primary operators and their weights per task (family names expand into equal shares).
RECIPES: dict[str, dict[str, float]] = {
    "text": {"synonym": 0.15, "mlm": 0.2, "wordvec": 0.1, "homophone": 0.1, "mask": 0.1,
                       "ngram": 0.1, "eda": 0.15, "convert": 0.1},
    "span_safe": {"synonym": 0.2, "mlm": 0.25, "wordvec": 0.1, "homophone": 0.1, "mask": 0.1, "eda": 0.15,
            "convert": 0.1},
}
# Operator options per task (rates are per eligible unit: words, or characters for homophone).
OPTIONS: dict[str, dict] = {
    "synonym": {"p": 0.2}, "mlm": {"p": 0.2}, "wordvec": {"p": 0.2}, "homophone": {"p": 0.1},
    "mask": {"p": 0.1}, "ngram": {"n_min": 1, "n_max": 5}, "eda": {"p": 0.1}, "convert": {},
}
# Pair task: which side a variant changes.
PAIR_SIDES = (("text", 0.4), ("text_pair", 0.4), ("both", 0.2))


class Draw(NamedTuple):
    """The plan of attempt k: its operator chain and, for pairs, the side(s) it changes."""

    chain: tuple[str, ...]
    side: str


class Policy:
    """Config only: operators are small, heavy state lives in per-process caches, so this pickles cheaply."""

    def __init__(self, task: str, primaries: list[tuple[str, float]], converts: tuple[str, ...], *,
                 num_aug: int, seed: int, resources: dict) -> None:
        self.task = task
        self.num_aug = num_aug
        self.seed = seed
        self.primaries = primaries
        self.converts = converts
        self.resources = resources
        self.attempts = 2 * num_aug + 4 if num_aug else 0  # none asked: no draws, so mlm predicts nothing
        spec = get_task(task)
        self.has_pair, self.per_token = spec.has_pair, spec.per_token
        # One operator and one side: every attempt has the same plan (a conversion is chained only after
        # another operator), and the operator may know how many distinct outputs a sentence allows.
        self.solo = primaries[0][0] if len(primaries) == 1 and not spec.has_pair else None
        self.operators = {spec: registry.build(spec, **_options(spec, resources))
                          for spec in [s for s, _ in primaries] + list(converts)}
        self._cum = []
        total = 0.0
        for _, weight in primaries:
            total += weight
            self._cum.append(total)

    def load(self) -> None:
        """Create the per-process state now (segmenter, lexicons, models), so a bad resource fails early."""
        segmenter(self.resources.get("user_dict"))
        for op in self.operators.values():
            if hasattr(op, "load"):
                op.load()

    def config(self) -> dict:
        return {
            "augment_version": AUGMENT_VERSION, "task": self.task, "num_aug": self.num_aug, "seed": self.seed,
            "attempts": self.attempts, "user_dict": self.resources.get("user_dict"),
            "primaries": [[spec, round(w, 6)] for spec, w in self.primaries],
            "chain_convert": CHAIN_CONVERT if self.converts else 0.0, "converts": list(self.converts),
            "pair_sides": [list(s) for s in PAIR_SIDES] if get_task(self.task).has_pair else None,
            "options": {spec: _options(spec, self.resources) for spec in self.operators},
        }

    def draws(self, example_id: str) -> Iterator[Draw]:
        """The plans of attempts 0, 1, ... of an example: one stream from (seed, example id, "recipe")."""
        if self.solo:
            yield from repeat(Draw((self.solo,), "text"), self.attempts)
            return
        rng = derive_rng(self.seed, example_id, ("recipe",), 0)
        specs = [s for s, _ in self.primaries]
        sides, side_weights = [s for s, _ in PAIR_SIDES], [w for _, w in PAIR_SIDES]
        for _ in range(self.attempts):
            primary = specs[0] if len(specs) == 1 else rng.pick(specs, self._cum)
            chain = (primary,)
            if self.converts and not primary.startswith("convert:") and rng.random() < CHAIN_CONVERT:
                chain += (rng.choice(self.converts),)
            yield Draw(chain, rng.choices(sides, weights=side_weights)[0] if self.has_pair else "text")

    def variants(self, example: Example) -> list[Variant]:
        return self.variants_batch([example])[0]

    def variants_batch(self, examples: Sequence[Example]) -> list[list[Variant]]:
        """The same as one `variants` call per example; operators that batch (mlm) prepare all at once."""
        segs = [self._segment(e) for e in examples]
        preparing = {spec: op for spec, op in self.operators.items() if hasattr(op, "prepare")}
        draws: list = [list(self.draws(e.id)) if preparing else self.draws(e.id) for e in examples]
        for spec, op in preparing.items():
            wanted = []
            for (main, pair), plan in zip(segs, draws, strict=True):
                if any(d.chain[0] == spec for d in plan):
                    wanted += [main] if pair is None else [main, pair]
            op.prepare(wanted)
        if self.solo and not self.per_token:
            return self._solo(examples, [main for main, _ in segs])
        return [self._generate(e, s, d) for e, s, d in zip(examples, segs, draws, strict=True)]

    def _segment(self, example: Example) -> tuple[Segmented, Segmented | None]:
        seg = segmenter(self.resources.get("user_dict"))
        if self.per_token:
            if example.tokens is None or example.tags is None:
                raise AugmentError(f"example {example.id}: the ner task needs tokens and tags")
            return seg.segment_tagged(tuple(example.tokens), tuple(example.tags)), None
        if self.has_pair and example.text_pair is None:
            raise AugmentError(f"example {example.id}: the pair task needs text_pair")
        pair = seg.segment(example.text_pair) if self.has_pair else None
        return seg.segment(example.text), pair

    def _run(self, chain: tuple[str, ...], seg: Segmented, rng: KeyedRandom, as_text: bool):
        """The chain applied to a sentence: the new Segmented, or with `as_text` its text; None if unchanged."""
        for spec in chain:
            seg = self.operators[spec].apply(seg, rng)
            if seg is None:
                return None
        return seg.text if as_text else seg

    def _attempts(self, example_id: str, chain: tuple[str, ...], which: str, seg: Segmented, as_text: bool):
        """Attempt k of a chain on one side of an example, as a function of k: its generator is
        derive_rng(seed, example id, chain + (side,), k), with the part of the key the attempts share
        hashed once (`KeyedSeries`). A single operator with a `text_maker` makes the text from the draws
        without building the words (only NER outputs need the words: its tokens and tags). None when the
        chain can never change this side."""
        stream = KeyedSeries(self.seed, example_id, chain + (which,))
        op = self.operators[chain[0]]
        if as_text and len(chain) == 1 and hasattr(op, "text_maker"):
            make = op.text_maker(seg)
            return None if make is None else lambda k: make(stream(k))
        run = self._run
        return lambda k: run(chain, seg, stream(k), as_text)

    def _generate(self, example: Example, segs: tuple[Segmented, Segmented | None],
                  draws: Iterable[Draw]) -> list[Variant]:
        main, pair = segs
        original = Variant.original(example)
        seen = {(original.text, original.text_pair)}
        out = [original]
        char_level = example.tokens is not None and all(len(t) == 1 for t in example.tokens)
        as_text = not self.per_token
        attempts: dict[tuple[tuple[str, ...], str], object] = {}   # (chain, side) -> k -> change, or None
        ids = VariantIds(example.id)   # variant_id(example id, ops, k), the shared part hashed once
        wanted = self.num_aug + 1
        if self.solo and hasattr(self.operators[self.solo], "capacity"):
            # Stop once every distinct output the sentence allows is found: later attempts could only repeat.
            capacity = self.operators[self.solo].capacity(main)
            if capacity is not None:
                wanted = min(wanted, capacity + 1)
        label, text_pair = example.label, original.text_pair
        for k, (chain, side) in enumerate(draws):
            if len(out) >= wanted:
                break
            new_main = new_pair = None
            for which, seg in (("text", main), ("text_pair", pair)):
                if side in (which, "both"):
                    attempt = attempts.get((chain, which), _UNSEEN)
                    if attempt is _UNSEEN:
                        attempt = attempts[chain, which] = self._attempts(example.id, chain, which, seg, as_text)
                    changed = None if attempt is None else attempt(k)
                    if changed is None:
                        break
                    if which == "text":
                        new_main = changed
                    else:
                        new_pair = changed
            else:
                if as_text:
                    text = original.text if new_main is None else new_main
                    pair_text = text_pair if new_pair is None else new_pair
                else:
                    text, pair_text = new_main.text, None   # NER: no pair, the text side always changes
                if (text, pair_text) in seen or not text.strip():
                    continue
                seen.add((text, pair_text))
                ops = tuple(f"{s}@{side}" for s in chain) if self.has_pair else chain
                tokens = tags = None
                if self.per_token:
                    tokens, tags = tokens_and_tags(new_main, char_level)
                out.append(Variant(ids(ops, k), example.id, text, pair_text, label, tokens, tags, ops, False))
        return out

    def _solo(self, examples: Sequence[Example], mains: Sequence[Segmented]) -> list[list[Variant]]:
        """`_generate` for a single-operator policy on a text task (every attempt the same chain on the same
        side, texts only): the same variants, the attempts' texts made for the whole batch at once where
        the operator offers `texts_batch` (`augment/batch.py`), first enough attempts for N outputs and a
        quarter more, then, for the examples still short, the rest. Each attempt's text depends on its
        example, k and the seed alone, so how many are made beyond those used changes nothing."""
        chain = (self.solo,)
        op = self.operators[self.solo]
        capacity = getattr(op, "capacity", None)
        outs: list[list[Variant]] = []
        jobs = []
        for example, main in zip(examples, mains, strict=True):
            outs.append([Variant.original(example)])
            wanted = self.num_aug + 1
            if capacity is not None and (allowed := capacity(main)) is not None:
                # Stop once every distinct output the sentence allows is found: later attempts could only repeat.
                wanted = min(wanted, allowed + 1)
            if wanted > 1 and self.attempts:
                first = min(self.attempts, wanted - 1 + (wanted - 1) // 4 + 2)
                jobs.append(_SoloJob(example, main, outs[-1], wanted, range(first), {example.text},
                                     KeyedSeries(self.seed, example.id, chain + ("text",)).seed,
                                     variant_hexes(example.id, chain, self.attempts)))
        new = tuple.__new__   # what Variant(...) makes, without its Python-level __new__ (one per output)
        while jobs:
            short = []
            for job, texts in zip(jobs, self._solo_texts(chain, jobs), strict=True):
                out, seen, wanted, hexes = job.out, job.seen, job.wanted, job.hexes
                source_id, label = job.example.id, job.example.label
                prefix = source_id + "~"   # variant_id(source_id, chain, k), from the attempts' hashes
                for k, text in zip(job.attempts, texts, strict=True):
                    if text is None or text in seen or not text or text.isspace():
                        continue
                    seen.add(text)
                    out.append(new(Variant, (prefix + hexes[16 * k:16 * k + 16], source_id, text, None, label,
                                             None, None, chain, False)))
                    if len(out) >= wanted:
                        break
                else:
                    if job.attempts.stop < self.attempts:
                        short.append(job._replace(attempts=range(job.attempts.stop, self.attempts)))
            jobs = short
        return outs

    def _solo_texts(self, chain: tuple[str, ...], jobs: list[_SoloJob]) -> list[list[str | None]]:
        """Each job's attempts' texts: in one batch when the operator batches and the batch is large enough
        to pay for its arrays (BATCH_ATTEMPTS), else attempt by attempt."""
        op = self.operators[chain[0]]
        if hasattr(op, "texts_batch") and sum(len(job.attempts) for job in jobs) >= BATCH_ATTEMPTS:
            return op.texts_batch([(job.seg, job.seed, job.attempts) for job in jobs])
        out = []
        for job in jobs:
            attempt = self._attempts(job.example.id, chain, "text", job.seg, True)
            out.append([None] * len(job.attempts) if attempt is None else [attempt(k) for k in job.attempts])
        return out


class _SoloJob(NamedTuple):
    """An example on the single-operator path: its sentence, variants so far, how many it wants, the
    attempts to make next, the texts seen, its stream seed (`KeyedSeries.seed`) and its variant ids'
    suffixes (`variant_hexes`)."""

    example: Example
    seg: Segmented
    out: list[Variant]
    wanted: int
    attempts: range
    seen: set[str]
    seed: int
    hexes: str


def _options(spec: str, resources: dict) -> dict:
    name = spec.partition(":")[0]
    options = dict(OPTIONS[name])
    rates = resources.get("rates") or {}
    if spec in rates or name in rates:
        options["p"] = rates.get(spec, rates.get(name))
    if name == "mlm":
        options["model"] = resources["mlm_model"]
        options["device"] = resources.get("mlm_device") or "auto"
    if name == "wordvec":
        options["path"] = resources["wordvec"]
    return options


def make_policy(task: str, *, num_aug: int = 4, ops: Sequence[str] | None = None, seed: int = 0,
                mlm_model: str | None = None, wordvec: str | None = None,
                user_dict: str | None = None, device: str = "auto", rates: Mapping[str, float] | None = None) -> Policy:
    """The task's default recipe, or its restriction to `ops`; AugmentError on a bad task or operator.
    `device` is where the mlm operator runs (auto: CUDA when present). `rates` sets the rate p of operators
    that take one, by spec ("eda:swap") or family ("eda"), instead of OPTIONS' (the augment bench sets it
    so that zhkd changes as many characters as its peer)."""
    if num_aug < 0:
        raise AugmentError(f"num_aug must be >= 0, got {num_aug}")
    for spec in rates or {}:
        family = registry.expand(spec)[0].partition(":")[0]
        if "p" not in OPTIONS[family]:
            raise AugmentError(f"operator {spec} takes no rate")
    resources = {"mlm_model": mlm_model, "wordvec": wordvec, "user_dict": user_dict, "mlm_device": device,
                 "rates": dict(rates or {})}
    recipe = RECIPES["span_safe" if get_task(task).span_safe else "text"]
    if ops is None:
        names = [n for n in recipe if not (n == "mlm" and not mlm_model or n == "wordvec" and not wordvec)]
        specs = [(spec, recipe[n] / len(registry.expand(n))) for n in names for spec in registry.expand(n)]
    else:
        named = list(dict.fromkeys(spec for name in ops for spec in registry.expand(name)))
        if not named:
            raise AugmentError("no operator named")
        specs = [(spec, recipe.get(spec.partition(":")[0], 0.1) / _family_size(spec, named)) for spec in named]
        for spec, _ in specs:
            if spec.startswith("mlm") and not mlm_model:
                raise AugmentError("operator mlm needs a masked-LM checkpoint (--mlm-model)")
            if spec.startswith("wordvec") and not wordvec:
                raise AugmentError("operator wordvec needs a word-vector file (--wordvec)")
    converts = tuple(s for s, _ in specs if s.startswith("convert:"))
    if get_task(task).per_token:
        for spec, _ in specs:
            if not registry.operator_class(spec).span_safe:
                raise AugmentError(f"operator {spec} is not span-safe and cannot augment ner examples")
    return Policy(task, specs, converts, num_aug=num_aug, seed=seed, resources=resources)


def _family_size(spec: str, named: list[str]) -> int:
    name = spec.partition(":")[0]
    return sum(1 for s in named if s.partition(":")[0] == name)
