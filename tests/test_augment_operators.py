"""Operators one by one: rates, lexicon constraints, contiguity, conversion round trips, no spaces."""

from __future__ import annotations

import random
import re

import pytest
from pypinyin import lazy_pinyin

from zhkd.augment.charset import NEGATORS, is_rare
from zhkd.augment.lexicon import cilin_groups
from zhkd.augment.ops import build, expand
from zhkd.augment.ops.convert import INVERSE, convert_text
from zhkd.augment.rng import derive_rng
from zhkd.augment.segment import segmenter
from zhkd.pipelines.corpora import load_corpus

CJK_SPACE_CJK = re.compile(r"[\u4e00-\u9fff] +[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def dev_texts() -> list[str]:
    return [r["text"] for r in load_corpus("chnsenti", "dev")]


@pytest.fixture(scope="module")
def segs(dev_texts):
    return [segmenter().segment(t) for t in dev_texts[:300]]


def outputs(spec: str, segs, per_sentence: int = 3, **options):
    op = build(spec, **options)
    for n, seg in enumerate(segs):
        for k in range(per_sentence):
            out = op.apply(seg, derive_rng(0, f"s{n}", (spec,), k))
            if out is not None:
                yield seg, out


@pytest.mark.parametrize("spec", ["synonym", "homophone", "mask", "eda:swap", "eda:delete", "eda:insert"])
def test_rate_zero_changes_nothing(spec, segs):
    op = build(spec, p=0.0)
    assert all(op.apply(seg, random.Random(1)) is None for seg in segs[:50])


def test_synonym_substitutions_stay_in_one_cilin_group(segs):
    groups_of: dict[str, set[int]] = {}
    for g, words in enumerate(cilin_groups()):
        for w in words:
            groups_of.setdefault(w, set()).add(g)
    changed = 0
    for seg, out in outputs("synonym", segs):
        assert len(out.words) == len(seg.words)
        for old, new in zip(seg.words, out.words, strict=True):
            if old != new:
                changed += 1
                assert groups_of[old] & groups_of.get(new, set()), (old, new)
                assert not any(c in NEGATORS for c in old + new)
                assert not any(is_rare(c) for c in new)
    assert changed > 300


def test_homophone_substitutions_share_pinyin(segs):
    changed = 0
    for seg, out in outputs("homophone", segs):
        for old, new in zip(seg.words, out.words, strict=True):
            context = lazy_pinyin(old)
            for j, (a, b) in enumerate(zip(old, new, strict=True)):
                if a != b:
                    changed += 1
                    assert lazy_pinyin(b)[0] == context[j], (old, new)
                    assert b not in NEGATORS and not is_rare(b)
    assert changed > 300


def test_ngram_is_a_contiguous_run_of_words(segs):
    seen = 0
    for seg, out in outputs("ngram", segs):
        n = len(out.words)
        assert 1 <= n <= 5 and n < len(seg.words)
        assert any(seg.words[s:s + n] == out.words for s in range(len(seg.words) - n + 1))
        seen += 1
    assert seen > 500


@pytest.mark.parametrize("config", ["s2t", "s2tw", "s2hk"])
def test_convert_then_inverse_restores_99_percent(config, dev_texts):
    kept = total = 0
    for text in dev_texts:
        back = convert_text(convert_text(text, config), INVERSE[config])
        total += len(text)
        kept += sum(a == b for a, b in zip(text, back, strict=False)) if len(back) == len(text) else 0
    assert kept / total >= 0.99


def test_convert_keeps_word_boundaries(segs):
    for seg, out in outputs("convert:s2twp", segs, per_sentence=1):
        assert len(out.words) == len(seg.words)
        assert out.text == convert_text(seg.text, "s2twp") or all(
            new == convert_text(old, "s2twp") for old, new in zip(seg.words, out.words, strict=True))


@pytest.mark.parametrize("spec", [s for name in ("synonym", "homophone", "mask", "ngram", "eda", "convert")
                                  for s in expand(name)])
def test_no_operator_adds_a_space_between_cjk_characters(spec, segs):
    for seg, out in outputs(spec, segs, per_sentence=2):
        assert len(CJK_SPACE_CJK.findall(out.text)) <= len(CJK_SPACE_CJK.findall(seg.text)), out.text


def test_eda_delete_keeps_a_word_and_swap_keeps_the_multiset(segs):
    for seg, out in outputs("eda:swap", segs):
        assert sorted(out.words) == sorted(seg.words)
    for seg, out in outputs("eda:delete", segs):
        assert 0 < len(out.words) < len(seg.words)


def test_operators_never_touch_the_global_rng(segs):
    state = random.getstate()
    for spec in ("synonym", "homophone", "mask", "ngram", "eda:insert", "convert:s2t"):
        list(outputs(spec, segs[:40]))
    assert random.getstate() == state


def test_bad_operator_options_are_user_errors():
    from zhkd.augment.errors import AugmentError

    with pytest.raises(AugmentError):
        build("synonym", p=1.5)
    with pytest.raises(AugmentError):
        build("convert:s2x")
    with pytest.raises(AugmentError):
        expand("nonsense")


def test_user_dictionary_adds_words_and_tags(tmp_path):
    from zhkd.augment.errors import AugmentError
    from zhkd.augment.segment import Segmenter

    user_dict = tmp_path / "user.txt"
    user_dict.write_text("云原生架构 10 n\n", encoding="utf-8")
    seg = Segmenter(str(user_dict)).segment("我们采用云原生架构部署服务")
    assert "云原生架构" in seg.words and seg.pos[seg.words.index("云原生架构")] == "n"
    assert "云原生架构" not in segmenter().words("我们采用云原生架构部署服务")
    with pytest.raises(AugmentError, match="user dictionary"):
        Segmenter(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("spec", ["homophone", "synonym", "eda:swap", "eda:delete", "eda:insert"])
def test_an_operators_text_path_gives_the_text_of_its_words_path(spec, segs):
    op = build(spec)
    produced = 0
    for n, seg in enumerate(segs):
        for k in range(3):
            words = op.apply(seg, derive_rng(0, f"r{n}", (spec,), k))
            make = op.text_maker(seg)
            text = None if make is None else make(derive_rng(0, f"r{n}", (spec,), k))
            assert text == (None if words is None else words.text), seg.text
            produced += text is not None
    assert produced > len(segs)


def test_slot_draws_are_distinct_uniform_over_slots_and_weighted_within():
    from collections import Counter

    from zhkd.augment.ops.synonym import merged_sets
    from zhkd.augment.rng import KeyedRandom
    from zhkd.augment.tables import make_table

    two_sets = merged_sets(((("c",), (2.0,)), (("d", "e"), (1.0, 4.0))))
    tables = [((0,), make_table(("a", "b"), (1.0, 4.0))), ((1,), two_sets), ((2,), make_table(("f",), (5.0,)))]
    slots, picks = Counter(), Counter()
    rng = KeyedRandom(b"slots")
    for _ in range(30_000):
        drawn = rng.picks(tables, 2)
        assert len({payload for payload, _ in drawn}) == 2
        slots.update(payload for payload, _ in drawn)
        picks.update(cand for _, cand in drawn)
    assert all(abs(slots[(s,)] / 20_000 - 1) < 0.03 for s in range(3))   # each slot in 2 of 3 draws
    assert 0.22 < picks["a"] / (picks["a"] + picks["b"]) < 0.28           # weights 1 and 3
    assert 0.47 < picks["c"] / slots[(1,)] < 0.53                         # two sets, equal shares
    assert 0.22 < picks["d"] / (picks["d"] + picks["e"]) < 0.28
    assert two_sets.items == ("c", "d", "e") and two_sets.bounds == (1 << 31, 5 << 29)   # 1/2, 5/8 of 2^32
    single = Counter(cand for _ in range(20_000) for _, cand in rng.picks(tables, 1))
    assert abs(single["f"] / 20_000 - 1 / 3) < 0.02


def test_swap_pairs_are_distinct_and_uniform_over_ordered_pairs():
    from collections import Counter

    from zhkd.augment.rng import KeyedRandom

    rng = KeyedRandom(b"pairs")
    counts = Counter(pair for _ in range(12_000) for pair in rng.pairs(4, 3))
    assert set(counts) == {(a, b) for a in range(4) for b in range(4) if a != b}
    assert all(abs(n / 3_000 - 1) < 0.1 for n in counts.values())   # 36,000 draws over 12 pairs
    assert KeyedRandom(b"pairs").pairs(4, 3) == KeyedRandom(b"pairs").pairs(4, 3)


def test_a_sentence_that_cannot_change_gets_no_attempts():
    from zhkd.augment.example import Example
    from zhkd.augment.ops.homophone import Homophone
    from zhkd.augment.policy import make_policy

    seg = segmenter().segment("2024，OK！")
    assert Homophone().text_maker(seg) is None and build("synonym").text_maker(seg) is None
    policy = make_policy("classification", num_aug=3, ops=["homophone"], seed=0)
    assert [v.text for v in policy.variants(Example("x", "2024，OK！"))] == ["2024，OK！"]


@pytest.mark.parametrize("spec", ["homophone", "synonym", "eda:swap", "eda:delete"])
def test_a_single_operator_policy_gives_the_variants_of_the_general_loop(spec, segs):
    from zhkd.augment.example import Example
    from zhkd.augment.policy import make_policy

    examples = [Example(f"r{n}", seg.text) for n, seg in enumerate(segs[:40])]
    solo = make_policy("classification", num_aug=6, ops=[spec], seed=3)
    general = make_policy("classification", num_aug=6, ops=[spec], seed=3)
    general.solo = None   # the loop every other policy takes (same draws: one operator, no conversion)
    assert solo.solo == spec
    assert solo.variants_batch(examples) == general.variants_batch(examples)


ODD_SENTENCES = ["房间 很 干净 ， 服务 也 好", "酒店的服务很好，房间干净\x00", "好", "",
                 "这家酒店的房间很大很干净，服务员态度热情，早餐品种丰富，交通也方便，下次还会再来住"]


@pytest.mark.parametrize("spec", ["homophone", "synonym", "eda:swap", "eda:delete"])
@pytest.mark.parametrize("p", [0.05, 0.2, 1.0])
def test_batched_texts_are_the_text_makers_texts_for_every_attempt(spec, p, segs):
    # Rate 1 changes every slot: the batch runs out of the words it drew for some attempts and hands them
    # back to the text maker. Spaces and a trailing NUL take the batch's other paths.
    from zhkd.augment.rng import KeyedRandom

    op = build(spec, p=p)
    sentences = list(segs[:120]) + [segmenter().segment(t) for t in ODD_SENTENCES]
    jobs = [(seg, 1000 + n, range(n % 5, n % 5 + 12)) for n, seg in enumerate(sentences)]
    batched = op.texts_batch(jobs)
    made = 0
    for (seg, seed, attempts), texts in zip(jobs, batched, strict=True):
        make = op.text_maker(seg)
        expected = [None if make is None else make(KeyedRandom.of_seed(seed, k)) for k in attempts]
        assert texts == expected, seg.text
        made += sum(t is not None for t in texts)
    assert made > len(sentences)


def test_a_policy_gives_the_same_variants_in_a_batch_and_attempt_by_attempt(segs, monkeypatch):
    from zhkd.augment import policy as policy_module
    from zhkd.augment.example import Example
    from zhkd.augment.policy import make_policy

    examples = [Example(f"r{n}", seg.text) for n, seg in enumerate(segs[:30])]
    for spec in ("homophone", "synonym", "eda:swap"):
        batched = make_policy("classification", num_aug=8, ops=[spec], seed=5).variants_batch(examples)
        monkeypatch.setattr(policy_module, "BATCH_ATTEMPTS", 10 ** 9)   # every attempt by its text maker
        one_by_one = make_policy("classification", num_aug=8, ops=[spec], seed=5).variants_batch(examples)
        monkeypatch.undo()
        assert batched == one_by_one
        assert sum(len(v) - 1 for v in batched) > 100


def test_a_rate_given_to_a_policy_sets_its_operators_rate_and_config():
    from zhkd.augment.errors import AugmentError
    from zhkd.augment.policy import OPTIONS, make_policy

    policy = make_policy("classification", ops=["homophone", "eda"], rates={"homophone": 0.3, "eda:swap": 0.05})
    assert policy.operators["homophone"].p == 0.3 and policy.config()["options"]["homophone"]["p"] == 0.3
    assert policy.operators["eda:swap"].p == 0.05 and policy.operators["eda:delete"].p == OPTIONS["eda"]["p"]
    assert make_policy("classification", ops=["eda"], rates={"eda": 0.2}).operators["eda:insert"].p == 0.2
    with pytest.raises(AugmentError, match="takes no rate"):
        make_policy("classification", ops=["ngram"], rates={"ngram": 0.2})
    with pytest.raises(AugmentError, match="rate p must lie"):
        make_policy("classification", ops=["synonym"], rates={"synonym": 1.5})
