"""The ner policy on the whole bundled NER dev split: valid BIO, every entity kept (or converted)."""

from __future__ import annotations

import pytest

from zhkd.augment.errors import AugmentError
from zhkd.augment.example import Example
from zhkd.augment.ops.convert import convert_text
from zhkd.augment.policy import make_policy
from zhkd.pipelines.corpora import load_corpus


def entities(tokens, tags) -> list[tuple[str, str]]:
    """(type, text) of each entity, reading BIO strictly: an I- tag must continue a B-/I- of its type."""
    found, current = [], None
    for token, tag in zip(tokens, tags, strict=True):
        if tag.startswith("I-"):
            assert current is not None and current[0] == tag[2:], f"invalid BIO at {token}: {tags}"
            current[1].append(token)
            continue
        if current:
            found.append((current[0], "".join(current[1])))
        current = [tag[2:], [token]] if tag.startswith("B-") else None
    if current:
        found.append((current[0], "".join(current[1])))
    return found


@pytest.fixture(scope="module")
def ner_results():
    rows = list(load_corpus("pd98-ner", "dev"))
    examples = [Example(r["id"], "".join(r["tokens"]), tokens=tuple(r["tokens"]), tags=tuple(r["tags"]))
                for r in rows]
    policy = make_policy("ner", num_aug=3, seed=7)
    return examples, policy.variants_batch(examples)


def test_every_output_keeps_valid_bio_and_its_entities(ner_results):
    examples, results = ner_results
    augmented = 0
    for example, variants in zip(examples, results, strict=True):
        source = entities(example.tokens, example.tags)
        for v in variants[1:]:
            augmented += 1
            assert all(len(t) == 1 for t in v.tokens if t != "[MASK]"), "character tokens stay characters"
            assert len(v.tokens) == len(v.tags) and v.text == "".join(v.tokens)
            out = entities(v.tokens, v.tags)
            conversion = next((op.split(":")[1] for op in v.ops if op.startswith("convert:")), None)
            expected = [(t, convert_text(s, conversion) if conversion else s) for t, s in source]
            assert out == expected, (v.ops, source, out)
    assert augmented > 2 * len(examples)


def test_entity_words_are_never_edited_inside(ner_results):
    examples, results = ner_results
    ops = {op for variants in results for v in variants for op in v.ops}
    assert {"synonym", "homophone", "mask", "eda:insert", "eda:swap", "eda:delete"} <= ops
    assert not any(op.startswith("ngram") for op in ops)


def test_non_span_safe_operators_are_refused():
    with pytest.raises(AugmentError, match="span-safe"):
        make_policy("ner", ops=["ngram"])
    with pytest.raises(AugmentError, match="tokens"):
        make_policy("ner").variants(Example("x", "没有标注"))


def test_token_level_input_keeps_its_tokens():
    tokens = ("国务院", "总理", "在", "北京", "会见", "了", "来访", "的", "客人")
    tags = ("B-ORG", "O", "O", "B-LOC", "O", "O", "O", "O", "O")
    example = Example("t", "".join(tokens), tokens=tokens, tags=tags)
    for v in make_policy("ner", num_aug=6, ops=["synonym", "eda", "convert"]).variants(example)[1:]:
        assert len(v.tokens) == len(v.tags)
        ents = entities(v.tokens, v.tags)
        assert [t for t, _ in ents] == ["ORG", "LOC"]
