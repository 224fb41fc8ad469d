"""The fast paths of augment give what the libraries they stand in for give: jieba's words, jieba's HMM,
pypinyin's readings; the keyed generator draws uniformly and from its key alone."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from jieba import finalseg
from pypinyin import Style, lazy_pinyin

from zhkd.augment.charset import is_plain_word
from zhkd.augment.jieba_cut import _hmm_cut
from zhkd.augment.lexicon import SYNONYM_MIN_FREQ, dictionary_freq, dictionary_tag, synonym_sets
from zhkd.augment.pinyin import word_readings
from zhkd.augment.rng import KeyedRandom, derive_rng
from zhkd.augment.segment import Segmenter, segmenter
from zhkd.pipelines.corpora import load_corpus

ODD_TEXTS = [
    "", " ", "\r\n", "iPhone 12 Pro很好用3.5%的折扣，abc def\r\n测试  a+b#c&d_e.f-g 100% 。",
    "ＡＢＣ全角字符１２３", "𠀀𠀁扩展区字符", "。。。！！", "a", "中", "不错不错不错不错不错不错",
]


@pytest.fixture(scope="module")
def corpus_texts() -> list[str]:
    texts = [r["text"] for r in load_corpus("chnsenti", "train")][:3000]
    texts += ["".join(r["tokens"]) for r in load_corpus("pd98-ner", "train")][:1000]
    return texts + ODD_TEXTS


def test_the_cutter_gives_jiebas_words_on_the_bundled_corpora(corpus_texts):
    seg = segmenter()
    for text in corpus_texts:
        assert seg.cutter.cut(text) == list(seg.tokenizer.cut(text)), text


def test_the_cutter_follows_a_user_dictionary(tmp_path, corpus_texts):
    user_dict = tmp_path / "user.txt"
    user_dict.write_text("房间干净 50 a\n性价比 100 n\n携程网 20 nt\n", encoding="utf-8")
    seg = Segmenter(str(user_dict))
    assert "房间干净" in seg.cutter.cut("这家酒店房间干净，携程网订的")
    for text in corpus_texts[:800]:
        assert seg.cutter.cut(text) == list(seg.tokenizer.cut(text)), text


# Where jieba-rs alone cuts otherwise than jieba: Latin letters, digits and `-.%` inside a run its HMM
# takes, and CJK characters outside U+4E00..U+9FD5 (extension A, compatibility ideographs).
JIEBA_RS_DIFFERS = ["价格300-350元之间，还行", "6K-8K的配置", "办理check-in很慢", "1.SONY的屏幕好",
                    "房间A-45153号", "这个㐀㐁字很怪", "豈更的字"]


def test_the_cutter_gives_jiebas_words_where_jieba_rs_alone_differs():
    import rjieba

    seg = segmenter()
    plain = rjieba.Jieba()
    assert any(plain.cut(text) != list(seg.tokenizer.cut(text)) for text in JIEBA_RS_DIFFERS)
    for text in JIEBA_RS_DIFFERS:
        assert seg.cutter.cut(text) == list(seg.tokenizer.cut(text)), text


def test_the_cutter_follows_a_user_dictionary_that_redefines_and_forbids_words(tmp_path, corpus_texts):
    # A listed word counts twice in jieba's total, a frequency 0 makes the HMM split the word, a word
    # without frequency takes jieba's suggested one, a word of ASCII letters (none in jieba's own
    # dictionary) makes jieba-rs's route ambiguous: the total, every score and every word must be jieba's.
    user_dict = tmp_path / "user.txt"
    user_dict.write_text("酒店 900000 n\n不错 9 a\n贵得 0\n房间干净\nDVD 30 n\n", encoding="utf-8")
    assert "贵得" in segmenter().words("房价贵得离谱啦呗")   # an HMM word, split once forbidden
    seg = Segmenter(str(user_dict))
    try:
        assert seg.tokenizer.total != sum(f for f in seg.tokenizer.FREQ.values() if f)
        assert seg.words("房价贵得离谱啦呗")[1:3] == ["贵", "得"]
        assert "DVD" in seg.words("买了DVD12机")
        for text in corpus_texts[:800] + JIEBA_RS_DIFFERS + ["房间干净又整洁", "买了DVD12机和DV机", "12DVD3-4"]:
            assert seg.cutter.cut(text) == list(seg.tokenizer.cut(text)), text
    finally:
        finalseg.Force_Split_Words.discard("贵得")   # jieba keeps forced splits process-wide (its finalseg)


def test_a_segmenter_leaves_the_global_tokenizers_alone(tmp_path):
    import jieba
    import rjieba

    user_dict = tmp_path / "user.txt"
    user_dict.write_text("酒店房间干净 50 n\n", encoding="utf-8")
    before = list(jieba.dt.FREQ.items()) if jieba.dt.initialized else None
    seg = Segmenter(str(user_dict))
    assert "酒店房间干净" in seg.words("这个酒店房间干净")
    assert (list(jieba.dt.FREQ.items()) if jieba.dt.initialized else None) == before
    assert "酒店房间干净" not in jieba.lcut("这个酒店房间干净")
    assert not rjieba.has_word("酒店房间干净") and "酒店房间干净" not in rjieba.cut("这个酒店房间干净")


def test_the_hmm_cut_matches_jiebas_finalseg_on_unknown_runs(corpus_texts):
    rng = random.Random(1)
    for text in corpus_texts[:2000]:
        if not text:
            continue
        start = rng.randrange(len(text))
        run = text[start:start + rng.randint(1, 12)]
        assert _hmm_cut(run) == tuple(finalseg.cut(run)), run


@pytest.mark.parametrize("toned", [False, True])
def test_word_readings_are_pypinyins_on_the_corpus_words(corpus_texts, toned):
    seg = segmenter()
    words = {w for text in corpus_texts[:1500] for w in seg.words(text) if len(w) > 1}
    style = Style.TONE3 if toned else Style.NORMAL
    for word in words:
        expected = lazy_pinyin(word, style=style, errors=lambda chars: [""] * len(chars))
        if len(expected) == len(word):
            assert word_readings(word, toned) == tuple(expected), word


@pytest.mark.parametrize("toned", [False, True])
def test_homophone_slots_from_the_load_time_table_are_those_of_the_word_readings(corpus_texts, toned):
    from zhkd.augment.ops.homophone import word_slots
    from zhkd.augment.pinyin import char_homophones, default_read, homophones

    table, by_table = char_homophones(toned), 0
    for word in sorted({w for text in corpus_texts[:400] for w in segmenter().words(text)}):
        expected = []
        for j, reading in enumerate(word_readings(word, toned)):
            entry = homophones(word[j], reading, toned)
            if entry.items:
                expected.append((j, entry))
        assert word_slots(word, toned) == tuple(expected), word
        by_table += default_read(word, table)
    assert by_table > 1000   # most words take the table's path


def test_synonym_sets_keep_every_filter(corpus_texts):
    seg = segmenter()
    freq = dictionary_freq()
    checked = 0
    for text in corpus_texts[:300]:
        s = seg.segment(text)
        for word, tag in zip(s.words, s.pos, strict=True):
            for cands, cum in synonym_sets(word, tag):
                checked += 1
                assert len(cands) == len(cum) and list(cum) == sorted(cum)
                for c in cands:
                    assert c != word and len(c) >= 2 and is_plain_word(c) and freq[c] >= SYNONYM_MIN_FREQ
                    other = dictionary_tag(c)
                    assert not (other and tag and other[:1] != tag[:1])
    assert checked > 100
    assert synonym_sets("好", "a") == ()


def test_a_keyed_generator_depends_on_its_key_alone():
    first = derive_rng(3, "row-1", ("homophone", "text"), 2)
    random.seed(0)
    draws = [first.random() for _ in range(40)]
    random.seed(99)
    again = derive_rng(3, "row-1", ("homophone", "text"), 2)
    assert [again.random() for _ in range(40)] == draws
    assert derive_rng(3, "row-1", ("homophone", "text"), 3).random() != draws[0]
    assert derive_rng(4, "row-1", ("homophone", "text"), 2).random() != draws[0]
    assert all(0.0 <= x < 1.0 for x in draws)


def test_keyed_draws_are_uniform():
    rng = KeyedRandom(b"uniformity")
    counts = Counter(rng.randrange(7) for _ in range(70_000))
    assert set(counts) == set(range(7)) and max(counts.values()) - min(counts.values()) < 600
    pairs = Counter(tuple(sorted(rng.sample("abcde", 2))) for _ in range(20_000))
    assert len(pairs) == 10 and max(pairs.values()) - min(pairs.values()) < 300
    picks = Counter(rng.pick("ab", (1.0, 4.0)) for _ in range(20_000))
    assert 0.22 < picks["a"] / 20_000 < 0.28
    assert sorted(rng.sample(range(10), 10)) == list(range(10))
    assert len(set(rng.sample(range(100), 20))) == 20
    assert all(3 <= rng.randint(3, 5) <= 5 for _ in range(100))
    with pytest.raises(ValueError):
        rng.sample("ab", 3)
    with pytest.raises(ValueError):
        rng.randrange(0)


def test_numpy_stream_words_are_the_keyed_generators_draws():
    import numpy as np

    from zhkd.augment.batch import stream_words
    from zhkd.augment.rng import KeyedRandom, KeyedSeries

    seeds = [KeyedSeries(s, f"row-{s}", ("homophone", "text")).seed for s in range(5)]
    ks, js = [0, 3, 7, 2**20, 41], list(range(6))
    words = stream_words(np.repeat(np.array(seeds, np.uint64), 6), np.repeat(ks, 6), np.tile(js, 5))
    expected = []
    for seed, k in zip(seeds, ks, strict=True):
        rng = KeyedRandom.of_seed(seed, k)
        expected += [rng._word() for _ in js]
    assert words.tolist() == expected
    assert KeyedSeries(3, "row-1", ("homophone", "text"))(2).random() == derive_rng(3, "row-1", ("homophone", "text"),
                                                                                    2).random()


def test_numpy_bounded_draws_are_the_keyed_generators_randrange():
    import numpy as np

    from zhkd.augment.batch import below, stream_words

    n = np.array([1, 2, 3, 7, 100, 12_345, 2**31 - 1] * 4)
    seeds, ks, js = np.full(n.size, 987_654_321, np.uint64), np.repeat(np.arange(4), 7), np.tile(np.arange(7), 4)
    expected = [KeyedRandom.of_seed(987_654_321, k) for k in range(4)]
    assert below(stream_words(seeds, ks, js), n).tolist() == [expected[k].randrange(int(m))
                                                                for k, m in zip(ks, n, strict=True)]


def test_the_deletion_batch_makes_its_samples_itself_and_redraws_as_the_generator_does(corpus_texts):
    # Samples of several words redraw whole when two coincide (KeyedRandom.sample): the batch follows the
    # redraws, so only partial shuffles (4·count > words) and rare long redraws go to the text maker.
    from functools import partial

    from zhkd.augment.batch import delete
    from zhkd.augment.ops import build

    op = build("eda:delete", p=0.2)
    segs = [segmenter().segment(t) for t in corpus_texts[:200]]
    handed_back = []

    def maker(seg, rng):
        handed_back.append(seg)
        return op.text_maker(seg)(rng)

    planned = [(seg, plan) for seg in segs if (plan := op._deletion_plan(seg)) is not None]
    jobs = [(plan, 77 + n, range(25), partial(maker, seg)) for n, (seg, plan) in enumerate(planned)]
    made = delete(jobs)
    for (seg, _), (_, seed, attempts, _), texts in zip(planned, jobs, made, strict=True):
        make = op.text_maker(seg)
        assert texts == [make(KeyedRandom.of_seed(seed, k)) for k in attempts]
    at_once = [plan.count == 1 or 4 * plan.count <= len(plan.movable) for _, plan in planned]
    assert sum(at_once) > len(planned) / 2 and any(plan.count > 1 for _, plan in planned)
    assert len(handed_back) <= 25 * (len(planned) - sum(at_once)) + 0.05 * 25 * sum(at_once)


def test_registry_draws_pick_the_item_bisect_picks():
    from bisect import bisect_right

    import numpy as np

    from zhkd.augment.tables import SCALE, draw_items, item_codes, make_table

    rng = random.Random(3)
    tables = [make_table([f"词{n}{i}" for i in range(size)], np.cumsum([rng.random() + 1e-9 for _ in range(size)]))
              for n, size in enumerate([1, 2, 3, 7, 8, 9, 40, 129])]
    skewed = make_table(["多", "少", "稀"], [1.0, 1.0 + 1e-12, 2.0])   # an item with (almost) no weight
    tables.append(skewed)
    chosen = [tables[rng.randrange(len(tables))] for _ in range(5000)]
    bits = [rng.randrange(SCALE) for _ in chosen] + [0, SCALE - 1, skewed.bounds[0], skewed.bounds[0] - 1]
    chosen += [skewed] * 4
    items = draw_items(np.array([t.id for t in chosen]), np.array(bits, np.int64))
    codes, start, length = item_codes()
    for table, r, item in zip(chosen, bits, items.tolist(), strict=True):
        expected = table.items[bisect_right(table.bounds, r)]
        assert codes[start[item]:start[item] + length[item]].tobytes().decode("utf-32-le") == expected


def test_memo_tables_stay_tracked_by_the_collector():
    # CPython stops tracking a plain dict of atomic keys and values at a collection and tracks it again, in
    # the youngest generation, when a new tuple key goes in: young collections then walk the whole table.
    import gc

    from zhkd.augment.memo import memo

    @memo
    def joined(a: str, b: str) -> str:
        return a + b

    plain = {}
    for n in range(100):
        joined(str(n), "x")
        plain[(str(n), "x")] = str(n) + "x"
    gc.collect()
    assert gc.is_tracked(joined.table) and not gc.is_tracked(plain)
    assert joined("1", "x") == "1x" and len(joined.table) == 100
