"""The packed (padding-free) teacher forward: the plain forward's logits within 1e-5, and the plain forward
wherever it does not apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from zhkd.pipelines.packed_forward import OneDnnProducts, PackedForward, equal_length_runs, forward_path, unsupported
from zhkd.pipelines.teacher import TeacherHandler
from zhkd.pipelines.wire import TeacherRow, pack_ints, pack_segments

TOLERANCE = 1e-5
# Mixed lengths, runs of equal ones, a single-token row; right-padded to the longest.
LENGTHS = [1, 4, 4, 7, 9, 9, 9, 13, 13, 20]


def tiny(kind: str, family: str = "bert", act: str = "gelu"):
    """A random 2-layer classifier whose weights are large enough (std 0.3, not 0.02) that attention over a
    pad token, or over another row, moves the logits far beyond the tolerance."""
    config_class, prefix = {"bert": (transformers.BertConfig, "Bert"),
                            "roberta": (transformers.RobertaConfig, "Roberta")}[family]
    config = config_class(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, initializer_range=0.3, num_labels=3, hidden_act=act,
                          pad_token_id=1 if family == "roberta" else 0)
    torch.manual_seed(0)
    return getattr(transformers, f"{prefix}For{kind}Classification")(config).eval()


def padded_batch(model, lengths=LENGTHS, pairs: bool = False):
    generator = torch.Generator().manual_seed(1)
    ids = torch.full((len(lengths), max(lengths)), model.config.pad_token_id)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, model.config.vocab_size, (n,), generator=generator)
        mask[i, :n] = 1
        if pairs:
            types[i, n // 2: n] = 1
    return ids, mask, (types if pairs else None)


def per_row(model, ids, mask, types):
    """The model's own forward on each row alone, unpadded."""
    with torch.inference_mode():
        return [model(input_ids=ids[i: i + 1, :n], token_type_ids=None if types is None else types[i: i + 1, :n]
                      ).logits[0] for i, n in enumerate(mask.sum(dim=1).tolist())]


ONEDNN = [False, pytest.param(True, marks=pytest.mark.skipif(not OneDnnProducts.available(),
                                                              reason="torch has no oneDNN here"))]


@pytest.mark.parametrize("whole_batch_attention", [False, True])
@pytest.mark.parametrize("onednn", ONEDNN)
@pytest.mark.parametrize(("family", "kind"), [("bert", "Sequence"), ("bert", "Token"), ("roberta", "Sequence"),
                                              ("roberta", "Token")])
def test_the_packed_forward_gives_each_rows_own_logits_on_a_padded_batch(family, kind, onednn,
                                                                         whole_batch_attention):
    model = tiny(kind, family)
    ids, mask, types = padded_batch(model, pairs=family == "bert")
    alone = per_row(model, ids, mask, types)
    packed = PackedForward(model, onednn=onednn)
    assert packed.name == ("packed-onednn" if onednn else "packed")
    with torch.inference_mode():
        fast = packed(ids, mask, types, whole_batch_attention=whole_batch_attention)
        plain = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        leaky = model(input_ids=ids, token_type_ids=types).logits  # pad tokens attended to
    assert fast.shape == plain.shape
    for i, n in enumerate(mask.sum(dim=1).tolist()):
        got = fast[i, :n] if kind == "Token" else fast[i]
        assert (got - alone[i]).abs().max() <= TOLERANCE
        assert (got - (plain[i, :n] if kind == "Token" else plain[i])).abs().max() <= TOLERANCE
    # the tolerance tells a forward that lets pad tokens in from one that does not
    short = [i for i, n in enumerate(LENGTHS) if n < max(LENGTHS)]
    leak = max(((leaky[i, : LENGTHS[i]] if kind == "Token" else leaky[i]) - alone[i]).abs().max() for i in short)
    assert leak > 1e-3


@pytest.mark.parametrize("onednn", ONEDNN)
@pytest.mark.parametrize("act", ["gelu_new", "relu"])
def test_a_layer_without_the_exact_gelu_keeps_its_own_activation(act, onednn):
    model = tiny("Sequence", act=act)
    ids, mask, types = padded_batch(model)
    alone = per_row(model, ids, mask, types)
    with torch.inference_mode():
        fast = PackedForward(model, onednn=onednn)(ids, mask)
    assert max((fast[i] - alone[i]).abs().max() for i in range(len(LENGTHS))) <= TOLERANCE


def test_fusing_the_projections_leaves_the_plain_forward_and_the_weights_as_they_were():
    model = tiny("Sequence")
    ids, mask, types = padded_batch(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
        PackedForward(model)
        after = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(expected, after)
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())


@pytest.mark.parametrize("onednn", ONEDNN)
def test_the_packed_forward_is_the_same_bits_on_every_call(onednn):
    model = tiny("Sequence")
    ids, mask, _ = padded_batch(model)
    packed = PackedForward(model, onednn=onednn)
    with torch.inference_mode():
        assert torch.equal(packed(ids, mask), packed(ids, mask))


def teacher_row(row_id: str, input_ids: list[int], token_type_ids: list[int] | None = None) -> TeacherRow:
    """A row as the build hands it to the teacher (packed ids; no keys, gold or NER starts needed here)."""
    return TeacherRow(row_id, b"", b"", True, pack_ints(input_ids), pack_segments(token_type_ids), None, None, False)


def test_an_unsupported_architecture_falls_back_to_the_plain_forward(tmp_path):
    config = transformers.DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                           num_labels=2)
    torch.manual_seed(0)
    transformers.DistilBertForSequenceClassification(config).save_pretrained(str(tmp_path), safe_serialization=True)
    handler = TeacherHandler(str(tmp_path), "classification", pad_token_id=0, device="cpu", threads=1)
    loaded = handler.load_model()
    assert loaded.forward == "plain" and loaded.packed is None
    assert "DistilBertForSequenceClassification is not one of" in unsupported(loaded.model)
    with pytest.raises(ValueError, match="DistilBert"):
        PackedForward(loaded.model)
    ids = [list(range(5, 5 + n)) for n in LENGTHS]
    rows = [teacher_row(str(i), row_ids) for i, row_ids in enumerate(ids)]
    with torch.inference_mode():
        direct = [loaded.model(input_ids=torch.tensor([row_ids])).logits[0].numpy() for row_ids in ids]
    for result, expected in zip(handler.run_inference(rows, loaded), direct, strict=True):
        np.testing.assert_allclose(result.inference, expected, atol=TOLERANCE)


def test_the_packed_forward_runs_on_cpu_only():
    model = tiny("Sequence")
    assert forward_path(model, "cpu") == "packed"
    assert forward_path(model, "cuda:0") == "plain"


def test_the_handler_labels_alike_with_either_forward_and_says_which_ran(tiny_classifier):
    rows = [teacher_row(f"r{i}", [2, *range(7, 7 + n), 3], [0] * (n // 2 + 1) + [1] * (n - n // 2 + 1))
            for i, n in enumerate(LENGTHS)]
    fast = TeacherHandler(str(tiny_classifier), "pair", pad_token_id=0, device="cpu", threads=1)
    plain = TeacherHandler(str(tiny_classifier), "pair", pad_token_id=0, device="cpu", threads=1, forward="plain")
    loaded_fast, loaded_plain = fast.load_model(), plain.load_model()
    expected = "packed-onednn" if OneDnnProducts.available() else "packed"
    assert (loaded_fast.forward, loaded_fast.packed.name, loaded_plain.forward) == (expected, expected, "plain")
    for a, b in zip(fast.run_inference(rows, loaded_fast), plain.run_inference(rows, loaded_plain), strict=True):
        assert a.example.id == b.example.id
        np.testing.assert_allclose(a.inference, b.inference, atol=TOLERANCE)


def test_a_forward_other_than_auto_or_plain_is_refused(tiny_classifier):
    from zhkd.pipelines.errors import PipelineError

    with pytest.raises(PipelineError, match="auto or plain"):
        TeacherHandler(str(tiny_classifier), "classification", pad_token_id=0, forward="fast")


def test_attention_runs_over_the_padded_batch_when_torch_has_several_threads(monkeypatch):
    import zhkd.pipelines.packed_forward as module

    model = tiny("Sequence")
    ids, mask, _ = padded_batch(model)
    packed, seen = PackedForward(model), []
    real = module._packed_layer
    monkeypatch.setattr(module, "_packed_layer", lambda *a: seen.append(a[3].whole_batch) or real(*a))
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            for count in (1, 2):
                torch.set_num_threads(count)
                packed(ids, mask)
    finally:
        torch.set_num_threads(threads)
    assert seen == [False, True]  # one layer before the last, per call


def test_equal_length_runs_cover_the_packed_tokens_in_order():
    runs = equal_length_runs(LENGTHS)
    assert runs == [(0, 1, 1), (1, 2, 4), (9, 1, 7), (16, 3, 9), (43, 2, 13), (69, 1, 20)]
    assert runs[-1][0] + runs[-1][1] * runs[-1][2] == sum(LENGTHS)
