"""Students: the catalogue, initialisation from the teacher, and selection by a budget."""

from __future__ import annotations

import pytest
import torch
from conftest import SENTIMENT_LABELS, run_zhkd

from zhkd.distill.errors import DistillError
from zhkd.distill.selection import expected_calibration_error, select_student
from zhkd.distill.students import Shape, build_model, init_from_teacher, mapped_layers, parameter_count, student_names
from zhkd.models import load_model


def test_list_students_prints_the_catalogue_one_per_line():
    result = run_zhkd("distill", "--list-students", check=True)
    names = result.stdout.split()
    assert names == student_names() and {"rbt3", "tinybert4", "mini"} <= set(names)
    assert "bert-base" not in names  # the reference is never a student


@pytest.mark.parametrize(("teacher", "student", "mapping", "expected"), [
    (12, 3, "uniform", [3, 7, 11]),
    (12, 4, "uniform", [2, 5, 8, 11]),
    (12, 6, "uniform", [1, 3, 5, 7, 9, 11]),
    (12, 3, "bottom", [0, 1, 2]),
    (12, 3, "top", [9, 10, 11]),
    (4, 4, "uniform", [0, 1, 2, 3]),
])
def test_layer_mappings(teacher, student, mapping, expected):
    assert mapped_layers(teacher, student, mapping) == expected


def test_layer_mapping_errors():
    with pytest.raises(DistillError, match="cannot take layers"):
        mapped_layers(2, 3, "uniform")
    with pytest.raises(DistillError, match="unknown layer mapping"):
        mapped_layers(12, 3, "middle")


def test_init_from_teacher_copies_embeddings_and_mapped_layers():
    teacher = build_model(Shape("t", 4, 32, 2, 64), kind="sequence", vocab_size=100, labels=SENTIMENT_LABELS, seed=1)
    student = build_model(Shape("s", 2, 32, 2, 64), kind="sequence", vocab_size=100, labels=SENTIMENT_LABELS, seed=2)
    report = init_from_teacher(student, teacher, mapping="top")
    assert report["layers"] == {0: 2, 1: 3}
    assert "word_embeddings.weight" in report["embeddings"]
    t_state, s_state = teacher.state_dict(), student.state_dict()
    words = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(s_state[words], t_state[words])
    for i, j in report["layers"].items():
        for name in ("attention.self.query.weight", "output.dense.weight"):
            assert torch.equal(s_state[f"bert.encoder.layer.{i}.{name}"], t_state[f"bert.encoder.layer.{j}.{name}"])
    assert torch.equal(s_state["classifier.weight"], t_state["classifier.weight"])


def test_init_from_a_wider_teacher_leaves_the_student_random():
    teacher = build_model(Shape("t", 4, 64, 2, 128), kind="sequence", vocab_size=100, num_labels=2, seed=1)
    student = build_model(Shape("s", 2, 32, 2, 64), kind="sequence", vocab_size=100, num_labels=2, seed=2)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    report = init_from_teacher(student, teacher)
    assert report["layers"] == {} and "hidden" in report["reason"]
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_a_narrower_student_is_cut_out_of_its_teacher():
    teacher = build_model(Shape("t", 4, 64, 2, 128), kind="sequence", vocab_size=100, labels=SENTIMENT_LABELS, seed=1)
    student = build_model(Shape("s", 2, 32, 1, 64), kind="sequence", vocab_size=100, labels=SENTIMENT_LABELS, seed=2)
    important = list(range(10, 42))  # the 32 dimensions every LayerNorm weighs most
    with torch.no_grad():
        for name, module in teacher.named_modules():
            if name.endswith("LayerNorm"):
                module.weight[important] += 1.0
        # head 1 of teacher layer 3 carries more into the residual stream than head 0
        teacher.bert.encoder.layer[3].attention.output.dense.weight[:, 32:] *= 3
    report = init_from_teacher(student, teacher)
    assert report["method"] == "subclone" and report["hidden_dims"] == important
    assert report["layers"] == {0: 1, 1: 3} and report["heads"][1] == [1]
    t, s = teacher.state_dict(), student.state_dict()
    dims = torch.tensor(important)
    words = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(s[words], t[words][:, dims])
    query = "attention.self.query.weight"
    expected = t[f"bert.encoder.layer.3.{query}"][32:][:, dims] * 2 ** 0.5  # input halved: scaled by sqrt(64/32)
    assert torch.allclose(s[f"bert.encoder.layer.1.{query}"], expected)
    ln = "output.LayerNorm.weight"
    assert torch.equal(s[f"bert.encoder.layer.0.{ln}"], t[f"bert.encoder.layer.1.{ln}"][dims])
    assert torch.allclose(s["classifier.weight"], t["classifier.weight"][:, dims] * 2 ** 0.5)
    student.eval()
    assert student(input_ids=torch.tensor([[2, 7, 9, 3]])).logits.isfinite().all()


FAKE_MS = {(2, 32): 100.0, (3, 768): 30.0, (4, 312): 10.0, (4, 256): 8.0, (2, 128): 2.0}  # (layers, hidden) -> ms


def fake_latency(model) -> float:
    return FAKE_MS[(model.config.num_hidden_layers, model.config.hidden_size)]


@pytest.mark.parametrize(("speedup", "max_params", "expected"), [
    (3.0, None, "rbt3"),  # 3.3x: the only 768-wide shape that is fast enough
    (5.0, None, "tinybert4"),  # tinybert4, small and mini qualify; tinybert4 has the most parameters
    (11.0, None, "small"),
    (None, 2_000_000, "mini"),
    (5.0, 4_800_000, "small"),  # tinybert4 is fast enough but too big
])
def test_student_selection_picks_the_most_capable_within_budget(tiny_classifier, speedup, max_params, expected):
    teacher = load_model("sequence", tiny_classifier)
    events = []
    chosen, candidates = select_student(teacher, kind="sequence", num_labels=2, speedup=speedup,
                                        max_params=max_params, shapes=["rbt3", "tinybert4", "small", "mini"],
                                        latency_ms=fake_latency, log=events.append)
    assert chosen == expected
    by_shape = {c.shape: c for c in candidates}
    assert by_shape["rbt3"].speedup == pytest.approx(100 / 30)
    assert by_shape["mini"].params == parameter_count(build_model("mini", kind="sequence",
                                                                  vocab_size=teacher.config.vocab_size, num_labels=2))
    assert events[0]["event"] == "select_student" and events[0]["chosen"] == expected
    assert len(events[0]["candidates"]) == 4 and events[0]["teacher_ms"] == 100.0


def test_student_selection_with_no_fitting_shape_says_what_it_measured(tiny_classifier):
    teacher = load_model("sequence", tiny_classifier)
    with pytest.raises(DistillError, match=r"no student shape meets.*mini 50\.0x"):
        select_student(teacher, kind="sequence", num_labels=2, speedup=100.0, shapes=["mini"],
                       latency_ms=fake_latency)


def test_student_selection_times_the_teacher_and_every_shape_together_in_alternation(tiny_classifier, monkeypatch):
    """By default one round-robin times them all (so drift falls on all alike), at batch 1 and 64 tokens."""
    import zhkd.distill.latency as latency

    rounds = []

    def recorded(calls, *, runs, warmup):
        rounds.append((list(calls), runs))
        return {name: [0.010] if name == "teacher" else [0.002] for name in calls}  # seconds

    monkeypatch.setattr(latency, "time_in_rounds", recorded)
    teacher = load_model("sequence", tiny_classifier)
    chosen, candidates = select_student(teacher, kind="sequence", num_labels=2, speedup=4.0, shapes=["mini", "small"],
                                        runs=7, device="cpu")
    assert rounds == [(["teacher", "mini", "small"], 7)]
    assert chosen == "small" and all(c.speedup == pytest.approx(5.0) for c in candidates)


def test_expected_calibration_error():
    # Perfectly calibrated: confidence 0.75 and right 3 times in 4.
    assert expected_calibration_error([[0.75, 0.25]] * 4, [0, 0, 0, 1]) == pytest.approx(0.0)
    # Always confident, always right half of the time: ECE = |0.5 - 0.95|.
    assert expected_calibration_error([[0.95, 0.05]] * 4, [0, 1, 0, 1]) == pytest.approx(0.45)
