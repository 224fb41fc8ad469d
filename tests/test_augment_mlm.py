"""`mlm` with a tiny random masked LM, and `wordvec` with a small vector file built here."""

from __future__ import annotations

import pickle

import pytest

from zhkd.augment.charset import NEGATORS, is_cjk_word, is_rare
from zhkd.augment.example import Example, Variant
from zhkd.augment.lexicon import dictionary_freq
from zhkd.augment.ops.mlm import Mlm
from zhkd.augment.policy import make_policy
from zhkd.augment.rng import derive_rng
from zhkd.augment.segment import segmenter
from zhkd.pipelines.corpora import load_corpus

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return [Example(r["id"], r["text"], label=r["label"]) for r in list(load_corpus("chnsenti", "dev"))[:40]]


def test_fills_are_common_cjk_and_keep_word_lengths(tiny_mlm, examples):
    op = Mlm(str(tiny_mlm), top_k=8)
    segs = [segmenter().segment(e.text) for e in examples]
    op.prepare(segs)
    freq = dictionary_freq()
    special = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    slots = 0
    for seg in segs:
        for i, fills in seg.memo[op.key]:
            slots += 1
            original = seg.words[i]
            assert 0 < len(fills) <= 8 and original not in fills
            for fill in fills:
                assert fill not in special and is_cjk_word(fill) and len(fill) == len(original)
                assert not any(is_rare(c) or c in NEGATORS for c in fill)
                if len(fill) > 1:
                    assert freq.get(fill, 0) > 0, fill
    assert slots > 150


def test_batched_equals_one_at_a_time(tiny_mlm, examples):
    policy = make_policy("classification", num_aug=5, ops=["mlm"], seed=5, mlm_model=str(tiny_mlm))
    batched = policy.variants_batch(examples)
    fresh = pickle.loads(pickle.dumps(policy))
    one_by_one = [fresh.variants(e) for e in examples]
    assert batched == one_by_one
    changed = [v for variants in batched for v in variants[1:]]
    assert len(changed) > 3 * len(examples)
    for v, e in ((v, e) for e, vs in zip(examples, batched, strict=True) for v in vs[1:]):
        assert v.ops == ("mlm",) and len(v.text) == len(e.text) and v.text != e.text


def test_no_variants_asked_runs_no_model(tiny_mlm, examples, monkeypatch):
    policy = make_policy("classification", num_aug=0, mlm_model=str(tiny_mlm))
    monkeypatch.setattr(Mlm, "prepare", lambda self, segs: segs and pytest.fail("mlm predicted for zero variants"))
    assert policy.variants_batch(examples) == [[Variant.original(e)] for e in examples]


def test_apply_draws_from_the_prepared_fills_and_rate_zero_changes_nothing(tiny_mlm, examples):
    seg = segmenter().segment(examples[3].text)
    op = Mlm(str(tiny_mlm), p=0.5)
    out = op.apply(seg, derive_rng(0, "x", ("mlm",), 0))
    fills = dict(seg.memo[op.key])
    changed = [(i, new) for i, (old, new) in enumerate(zip(seg.words, out.words, strict=True)) if old != new]
    assert changed and all(new in fills[i] for i, new in changed)
    assert Mlm(str(tiny_mlm), p=0.0).apply(seg, derive_rng(0, "x", ("mlm",), 0)) is None


def test_ner_mlm_keeps_entities(tiny_mlm):
    rows = list(load_corpus("pd98-ner", "dev"))[:30]
    policy = make_policy("ner", num_aug=3, ops=["mlm"], mlm_model=str(tiny_mlm))
    examples = [Example(r["id"], "".join(r["tokens"]), tokens=tuple(r["tokens"]), tags=tuple(r["tags"])) for r in rows]
    for example, variants in zip(examples, policy.variants_batch(examples), strict=True):
        for v in variants[1:]:
            src = [t for t, g in zip(example.tokens, example.tags, strict=True) if g != "O"]
            assert [t for t, g in zip(v.tokens, v.tags, strict=True) if g != "O"] == src


def test_policy_pickles_without_the_model(tiny_mlm, examples):
    policy = make_policy("classification", num_aug=2, mlm_model=str(tiny_mlm))
    policy.variants(examples[0])
    assert len(pickle.dumps(policy)) < 4000


def test_wordvec_replaces_by_near_neighbours(tmp_path):
    vectors = {"价格": [1, 0, 0, 0], "价钱": [0.95, 0.1, 0, 0], "售价": [0.9, 0.2, 0, 0],
               "房间": [0, 1, 0, 0], "客房": [0.05, 0.97, 0, 0], "不错": [0, 0, 1, 0], "很好": [0, 0, 0.99, 0.1],
               "北京": [0, 0, 0, 1]}
    path = tmp_path / "vec.txt"
    path.write_text(f"{len(vectors)} 4\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vectors.items()),
                    encoding="utf-8")
    policy = make_policy("classification", num_aug=6, ops=["wordvec"], wordvec=str(path))
    variants = policy.variants(Example("w", "这家酒店价格便宜，房间宽敞，服务不错"))
    texts = {v.text for v in variants[1:]}
    assert texts and all("不错" in t for t in texts)   # a word with a negator is never replaced
    assert any("价钱" in t or "售价" in t or "客房" in t for t in texts)


def test_the_mlm_device_is_part_of_the_policy_and_a_missing_gpu_is_refused(tiny_mlm):
    import torch

    from zhkd.augment.errors import AugmentError

    on_cpu = make_policy("classification", ops=["mlm"], mlm_model=str(tiny_mlm), device="cpu")
    on_gpu = make_policy("classification", ops=["mlm"], mlm_model=str(tiny_mlm), device="cuda")
    assert on_cpu.config()["options"]["mlm"]["device"] == "cpu" and on_cpu.config() != on_gpu.config()
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(AugmentError, match="no CUDA device"):
        Mlm(str(tiny_mlm), device="cuda").load()
