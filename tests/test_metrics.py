"""zhkd.distill.metrics against values computed by hand on small fixtures."""

from __future__ import annotations

import pytest

from zhkd.distill.metrics import classification_scores, entity_spans, ner_scores
from zhkd.tasks import get_task


def test_three_labels_accuracy_and_macro_f1():
    gold = [0, 0, 1, 1, 1, 2]
    pred = [0, 1, 1, 1, 0, 2]
    scores = classification_scores(gold, pred, num_labels=3)
    # label 0: tp 1, fp 1, fn 1 -> F1 1/2; label 1: tp 2, fp 1, fn 1 -> 2/3; label 2: 1.
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert "f1" not in scores


def test_pair_f1_is_the_f1_of_label_one():
    gold = [1, 1, 0, 0, 1]
    pred = [1, 0, 0, 1, 1]
    scores = classification_scores(gold, pred, num_labels=2)
    # label 1: tp 2, fp 1, fn 1 -> 2/3; label 0: tp 1, fp 1, fn 1 -> 1/2.
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_a_label_never_seen_counts_zero_in_macro_f1():
    scores = classification_scores([0, 1], [0, 1], num_labels=3)
    assert scores["accuracy"] == 1.0
    assert scores["macro_f1"] == pytest.approx(2 / 3)


def test_all_wrong_scores_zero():
    scores = classification_scores([0, 0, 1], [1, 1, 0], num_labels=2)
    assert scores == {"accuracy": 0.0, "macro_f1": 0.0, "f1": 0.0}


def test_classification_refuses_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="2 gold labels but 1"):
        classification_scores([0, 1], [0], num_labels=2)
    with pytest.raises(ValueError, match="no examples"):
        classification_scores([], [], num_labels=2)


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["O", "O", "O"], set()),
        (["B-PER", "I-PER", "O", "B-LOC"], {(0, 2, "PER"), (3, 4, "LOC")}),
        # adjacent entities of the same type: a B- always opens a new entity
        (["B-PER", "I-PER", "B-PER", "I-PER"], {(0, 2, "PER"), (2, 4, "PER")}),
        (["B-PER", "B-PER"], {(0, 1, "PER"), (1, 2, "PER")}),
        # adjacent entities of different types
        (["B-PER", "B-LOC", "I-LOC"], {(0, 1, "PER"), (1, 3, "LOC")}),
        # entity at the end of the sentence, one and several characters long
        (["O", "O", "B-ORG", "I-ORG"], {(2, 4, "ORG")}),
        (["O", "B-ORG"], {(1, 2, "ORG")}),
        # I- without B-: it opens an entity, at the start and after O
        (["I-LOC", "I-LOC", "O"], {(0, 2, "LOC")}),
        (["O", "I-LOC", "I-LOC", "O"], {(1, 3, "LOC")}),
        (["B-PER", "O", "I-PER"], {(0, 1, "PER"), (2, 3, "PER")}),
        # the type changes inside a run of I-: the run splits where the type changes
        (["B-PER", "I-LOC", "I-LOC"], {(0, 1, "PER"), (1, 3, "LOC")}),
        (["B-ORG", "I-ORG", "I-PER", "I-ORG"], {(0, 2, "ORG"), (2, 3, "PER"), (3, 4, "ORG")}),
    ],
)
def test_entity_spans(tags, spans):
    assert entity_spans(tags) == spans


def test_ner_scores_by_hand():
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"],  # PER(0,2) LOC(3,5)
        ["B-ORG", "I-ORG", "I-ORG", "O"],  # ORG(0,3)
        ["O", "O", "B-PER"],  # PER(2,3), at the sentence end
    ]
    pred = [
        ["B-PER", "I-PER", "O", "B-LOC", "O"],  # PER right; LOC(3,4) too short
        ["O", "I-ORG", "I-ORG", "O"],  # ORG(1,3): stray I-, wrong start
        ["B-LOC", "O", "B-PER"],  # LOC(0,1) spurious; PER right
    ]
    # tp 2 (both PER), fp 3 (LOC(3,4), ORG(1,3), LOC(0,1)), fn 2 (LOC(3,5), ORG(0,3)).
    scores = ner_scores(gold, pred)
    assert scores["precision"] == pytest.approx(2 / 5)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(2 * (2 / 5) * (1 / 2) / (2 / 5 + 1 / 2))
    assert scores["f1_PER"] == pytest.approx(1.0)
    assert scores["f1_LOC"] == 0.0 and scores["f1_ORG"] == 0.0


def test_ner_type_must_match_as_well_as_span():
    scores = ner_scores([["B-PER", "I-PER"]], [["B-LOC", "I-LOC"]])
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.0


def test_ner_perfect_and_empty():
    tags = [["B-PER", "I-PER", "B-PER", "O", "B-LOC"]]
    assert ner_scores(tags, tags)["f1"] == 1.0
    assert ner_scores([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_ner_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 gold sequences but 1"):
        ner_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="3 gold tags but 2"):
        ner_scores([["O", "O", "O"]], [["O", "O"]])


def test_primary_metric_per_task():
    assert {name: get_task(name).headline for name in ("classification", "pair", "ner")} == {
        "classification": "accuracy", "pair": "accuracy", "ner": "f1"}
