"""The teacher path without a pipeline: tokenisation, NER alignment, deterministic batches, the handler."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from zhkd.augment.example import Variant
from zhkd.models import ModelError
from zhkd.pipelines.errors import PipelineError
from zhkd.pipelines.label_filter import LabelFilter, judge
from zhkd.pipelines.teacher import TeacherHandler, TeacherTokenizer, inspect_teacher, plan_batches
from zhkd.pipelines.wire import TeacherRow, pack_ints


def variant(row_id: str, text: str = "", text_pair: str | None = None, tokens: tuple | None = None) -> Variant:
    text = "".join(tokens) if tokens else text
    return Variant(row_id, row_id, text, text_pair, None, tokens, None, (), True)


def test_inspect_teacher_reads_labels_and_fingerprints(tiny_classifier, tiny_tagger):
    info = inspect_teacher(str(tiny_classifier), "classification")
    assert info.label_names == ("negative", "positive") and info.num_labels == 2 and info.max_length == 512
    assert len(info.weights_sha256) == 64 and len(info.tokenizer_sha256) == 64
    assert inspect_teacher(str(tiny_tagger), "ner").label_names[:2] == ("O", "B-PER")
    with pytest.raises(PipelineError, match="token-classification"):
        inspect_teacher(str(tiny_classifier), "ner")


def test_ner_token_starts_point_at_first_pieces(tiny_tagger):
    tokenizer = TeacherTokenizer(str(tiny_tagger), "ner", max_length=512)
    (enc,) = tokenizer.encode([variant("a", tokens=("北京", " ", "欢迎", "你"))])
    assert enc.token_starts == [1, -1, 3, 5] and len(enc.input_ids) == 7 and not enc.truncated
    short = TeacherTokenizer(str(tiny_tagger), "ner", max_length=4)
    (cut,) = short.encode([variant("b", tokens=("北京", " ", "欢迎", "你"))])
    assert cut.truncated and len(cut.input_ids) == 4 and cut.token_starts == [1, -1, -1, -1]


def test_pair_tokenisation_keeps_segment_ids(tiny_classifier):
    tokenizer = TeacherTokenizer(str(tiny_classifier), "pair", max_length=512)
    (enc,) = tokenizer.encode([variant("p", "你好", "世界")])
    assert enc.token_type_ids == [0, 0, 0, 0, 1, 1, 1]


def test_batches_depend_on_the_rows_not_their_order():
    def row(i: int) -> TeacherRow:
        return TeacherRow(f"r{i:03d}", b"", b"", True, pack_ints([0] * (3 + (i * 7) % 40)), None, None, None, False)

    rows = [row(i) for i in range(200)]
    plan = plan_batches(rows, batch_tokens=256, max_rows=16)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert [[r.id for r in b] for b in plan] == [[r.id for r in b] for b in
                                                 plan_batches(shuffled, batch_tokens=256, max_rows=16)]
    assert sorted(r.id for b in plan for r in b) == sorted(r.id for r in rows)
    for batch in plan:
        width = max(r.length for r in batch)
        assert len(batch) <= 16 and (len(batch) == 1 or len(batch) * width <= 256)
    flat = [(r.length, r.id) for b in plan for r in b]
    assert flat == sorted(flat) and flat[0][0] == 3


def test_handler_logits_match_the_model_and_align_ner_tokens(tiny_tagger):
    from zhkd.models import load_model

    tokenizer = TeacherTokenizer(str(tiny_tagger), "ner", max_length=512)
    variants = [variant("a", tokens=("北京", " ", "欢迎", "你")), variant("b", tokens=("张", "三"))]
    encodings = tokenizer.encode(variants)
    rows = [TeacherRow.make(v, enc, b"", None) for v, enc in zip(variants, encodings, strict=True)]
    handler = TeacherHandler(str(tiny_tagger), "ner", pad_token_id=0, device="cpu")
    loaded = handler.load_model()
    results = handler.run_inference(rows, loaded)
    model = load_model("token", tiny_tagger).eval()
    with torch.inference_mode():
        direct = model(input_ids=torch.tensor([encodings[0].input_ids])).logits[0].numpy()
    got = results[0].inference
    assert got.shape == (4, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got[[0, 2, 3]], direct[[1, 3, 5]], atol=1e-5)
    assert not got[1].any()  # the whitespace token has no piece: zeros, and token_starts says -1
    assert results[1].example.id == "b" and results[1].inference.shape == (2, 7)


def test_segment_ids_reach_the_model_as_the_tokenizer_gave_them(tiny_classifier):
    """In flight, all-zero segment ids travel as b"": the model still gets the zeros the tokenizer gave
    (and a pair's second segment its ones), so the logits are those of the tokenizer's full encoding."""
    from zhkd.models import load_model

    model = load_model("sequence", tiny_classifier).eval()
    for task, row, packed_as_empty in [("classification", variant("q", "很好"), True),
                                       ("pair", variant("p", "你好", "世界"), False)]:
        (enc,) = TeacherTokenizer(str(tiny_classifier), task, max_length=512).encode([row])
        teacher_row = TeacherRow.make(row, enc, b"", None)
        assert (teacher_row.token_type_ids == b"") == packed_as_empty and enc.token_type_ids is not None
        handler = TeacherHandler(str(tiny_classifier), task, pad_token_id=0, device="cpu")
        (result,) = handler.run_inference([teacher_row], handler.load_model())
        with torch.inference_mode():
            direct = model(input_ids=torch.tensor([enc.input_ids]),
                           token_type_ids=torch.tensor([enc.token_type_ids])).logits[0].numpy()
        np.testing.assert_allclose(result.inference, direct, atol=1e-6)


def test_judge_and_filter():
    agree = judge(np.array([0.0, 3.0]), gold=1)
    assert agree.agrees and agree.confidence > 0.9
    assert judge(np.array([0.0, 3.0]), gold=0).agrees is False
    assert judge(np.array([0.0, 3.0]), gold=None).agrees is None
    tokens = judge(np.array([[5.0, 0], [0, 0], [0, 5.0]]), gold=[0, 1, 1], token_starts=[1, -1, 2])
    assert tokens.agrees  # the unseen middle token does not count
    strict = LabelFilter(drop_disagreeing=True, min_confidence=0.8)
    assert strict.reason_to_drop(judge(np.array([0.0, 3.0]), gold=0), is_original=False) == "disagrees_with_gold"
    assert strict.reason_to_drop(judge(np.array([0.0, 0.1]), gold=1), is_original=False) == "low_confidence"
    assert strict.reason_to_drop(judge(np.array([0.0, 3.0]), gold=0), is_original=True) is None
    assert LabelFilter().reason_to_drop(judge(np.array([0.0, 0.1]), gold=0), is_original=False) is None



def test_handler_pins_the_configured_thread_count(tiny_classifier):
    """The thread count is configuration, not the runner's choice: it can change the logits' last bits."""
    before = torch.get_num_threads()
    try:
        TeacherHandler(str(tiny_classifier), "classification", pad_token_id=0, device="cpu", threads=1).load_model()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_missing_teacher_directory_is_a_user_error(tmp_path):
    with pytest.raises(ModelError, match="nowhere: no such checkpoint directory"):
        inspect_teacher(str(tmp_path / "nowhere"), "classification")


def test_a_teacher_head_must_match_multilabel_or_not(tiny_classifier, tiny_multilabel):
    assert inspect_teacher(str(tiny_multilabel), "multilabel").label_names == ("LOC", "ORG", "PER")
    with pytest.raises(PipelineError, match="not a multi-label classifier"):
        inspect_teacher(str(tiny_classifier), "multilabel")
    with pytest.raises(PipelineError, match="is a multi-label classifier"):
        inspect_teacher(str(tiny_multilabel), "classification")


def test_multilabel_agreement_is_the_exact_set_and_confidence_the_chosen_sides():
    from zhkd.pipelines.label_filter import judge_set

    # sigmoid(2) = 0.8808, sigmoid(-1) = 0.2689, sigmoid(0) = 0.5: chosen sides 0.8808, 0.7311, 0.5.
    judged = judge_set(np.array([2.0, -1.0, 0.0]), gold=[0, 2])
    assert judged.agrees and judged.confidence == pytest.approx((0.880797 + 0.731059 + 0.5) / 3, abs=1e-6)
    assert judge_set(np.array([2.0, -1.0, -0.1]), gold=[0, 2]).agrees is False
    assert judge_set(np.array([-2.0, -1.0, -3.0]), gold=[]).agrees
    assert judge_set(np.array([2.0, -1.0]), gold=None).agrees is None
