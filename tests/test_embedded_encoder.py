"""The embedded encoder ships whole and as its card says; a collapsed start is measured and named."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import SENTIMENT_LABELS, tiny_checkpoint, write_jsonl

from zhkd.cli import main
from zhkd.distill.finetune import FinetuneConfig, collapse_warning
from zhkd.distill.pretrain import COLLAPSED_SIMILARITY, state_similarity
from zhkd.distill.students import get_shape
from zhkd.models import EMBEDDED_ENCODER, ModelError, embedded_encoder, load_model, load_tokenizer
from zhkd.shards import file_sha256

ROOT = Path(__file__).resolve().parent.parent
CARD = ROOT / "data_cards" / "zhkd-char-encoder.md"
sys.path.insert(0, str(ROOT / "bench"))

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def card_figure(name: str) -> str:
    """The value of one row of the card's figures table."""
    match = re.search(rf"^\| {re.escape(name)} \| (.+) \|$", CARD.read_text("utf-8"), re.MULTILINE)
    assert match, f"the card has no row {name!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def encoder():
    return load_model("mlm", embedded_encoder()).eval(), load_tokenizer(embedded_encoder())


def test_the_embedded_encoder_loads_as_a_masked_lm_and_its_card_names_its_sha256(encoder):
    weights = EMBEDDED_ENCODER / "model.safetensors"
    assert file_sha256(weights) in card_figure("file")
    assert weights.stat().st_size <= 25 * 2**20  # the cap for package data
    model, tokenizer = encoder
    assert len(tokenizer) == model.config.vocab_size == json.loads((EMBEDDED_ENCODER / "summary.json")
                                                                   .read_text("utf-8"))["vocab_size"]
    assert tokenizer.tokenize("酒店很好")[0] == "酒"  # a character vocabulary


def test_the_encoders_predictions_on_held_out_sentences_are_the_cards(encoder):
    from encoder_card import predict

    model, tokenizer = encoder
    probes = json.loads((EMBEDDED_ENCODER / "probes.json").read_text("utf-8"))
    assert len(probes) >= 4
    card = CARD.read_text("utf-8")
    for probe in probes:
        assert predict(model, tokenizer, probe["text"], probe["position"]) == probe["predicted"]
        shown = probe["text"][: probe["position"]] + "[MASK]" + probe["text"][probe["position"] + 1 :]
        assert f"| {shown} | {probe['masked']} | {' '.join(probe['predicted'])} |" in card


def test_the_cards_held_out_figures_are_the_shipped_runs(encoder):
    summary = json.loads((EMBEDDED_ENCODER / "summary.json").read_text("utf-8"))
    assert card_figure("held-out masked accuracy").startswith(f"{summary['heldout']['accuracy']:.4f} ")
    assert f"{summary['steps']:,} of batch {summary['config']['batch_size']}" in card_figure("steps")
    assert summary["config"]["char_vectors"] is None  # the card's terms say no outside weights went in


def test_the_encoder_is_the_shape_the_demo_scales_price_it_as(encoder):
    from zhkd.demo import SCALES

    model, _ = encoder
    shape = get_shape(json.loads((EMBEDDED_ENCODER / "summary.json").read_text("utf-8"))["config"]["shape"])
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (shape.layers, shape.hidden)
    assert {scale.mlm_shape for scale in SCALES.values() if scale.mlm_steps == 0} == {shape.name}


def test_an_install_without_the_encoder_names_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr("zhkd.models.EMBEDDED_ENCODER", tmp_path / "encoder")
    with pytest.raises(ModelError, match="embedded encoder is missing from this install; reinstall zhkd"):
        embedded_encoder()


def test_finetune_starts_from_the_embedded_encoder_when_given_no_init(tmp_path):
    rows = [{"id": f"r{i}", "text": text, "label": label} for i, (text, label) in
            enumerate([("酒店很好，服务周到", "positive"), ("房间太脏了", "negative")] * 4)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "teacher"
    assert main(["finetune", "--task", "classification", "--train", str(train), "--output", str(out),
                 "--max-steps", "1", "--lr", "1e-9", "--batch-size", "4", "--max-length", "32"]) == 0
    started = next(json.loads(line) for line in (out / "log.jsonl").open() if '"finetune"' in line)
    assert started["init"] == str(EMBEDDED_ENCODER)
    assert started["start_state_similarity"] < COLLAPSED_SIMILARITY
    teacher = load_model("sequence", out)
    encoder = load_model("mlm", EMBEDDED_ENCODER)
    embeddings = teacher.bert.embeddings.word_embeddings.weight
    assert torch.allclose(embeddings, encoder.bert.embeddings.word_embeddings.weight, atol=1e-6)


def collapsed_checkpoint(out_dir: Path) -> Path:
    """A tiny MLM whose top layer says the same at every position: its last LayerNorm's gain zeroed, so every
    state is that LayerNorm's bias, as in an MLM's early collapse (only less subtly)."""
    tiny_checkpoint(out_dir, "mlm")
    model = load_model("mlm", out_dir)
    with torch.no_grad():
        model.bert.encoder.layer[-1].output.LayerNorm.weight.zero_()
        model.bert.encoder.layer[-1].output.LayerNorm.bias.normal_(generator=torch.Generator().manual_seed(0))
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def test_state_similarity_tells_a_collapsed_encoder_from_a_random_one(tmp_path, tiny_mlm):
    texts = ["酒店很好，服务周到", "房间太脏了，不会再来", "迈向充满希望的新世纪"]
    collapsed = collapsed_checkpoint(tmp_path / "collapsed")
    assert state_similarity(load_model("mlm", collapsed), load_tokenizer(collapsed), texts) == pytest.approx(1.0)
    assert state_similarity(load_model("mlm", tiny_mlm), load_tokenizer(tiny_mlm), texts) < COLLAPSED_SIMILARITY


def test_finetune_from_a_collapsed_start_warns_in_one_line(tmp_path, capfd):
    collapsed = collapsed_checkpoint(tmp_path / "collapsed")
    rows = [{"id": f"r{i}", "text": text, "label": SENTIMENT_LABELS[i % 2]}
            for i, text in enumerate(["酒店很好，服务周到", "房间太脏了"] * 4)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    capfd.readouterr()
    assert main(["finetune", "--task", "classification", "--train", str(train), "--init", str(collapsed),
                 "--output", str(tmp_path / "out"), "--max-steps", "1", "--batch-size", "4", "--max-length", "32"]) == 0
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "early collapse" in warnings[0] and str(collapsed) in warnings[0]
    config = FinetuneConfig(task="classification", train=train, init="x", output=tmp_path / "o")
    assert collapse_warning(config, 0.3) is None and "mean cosine 0.990" in collapse_warning(config, 0.99)
