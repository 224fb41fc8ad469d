"""`zhkd pretrain`: the character MLM learns, reloads through the Auto classes, and is a pure function
of its input and seed (also across an interruption and `--resume`)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from itertools import islice
from pathlib import Path

import pytest
from conftest import run_zhkd, write_jsonl

from zhkd.distill.errors import DistillError
from zhkd.distill.pretrain import (
    PretrainConfig,
    collate,
    encode_texts,
    mask_batch,
    pack_blocks,
    pretrain_mlm,
    read_texts,
)
from zhkd.pipelines.corpora import corpus_path, load_corpus

QUICK = PretrainConfig(shape="mini", max_length=64, batch_size=16, lr=1e-3, log_every=4, save_every=0)
# One torch thread, in this process and in the CLI's (see the fixture's docstring): quick on a busy CPU.
pytestmark = pytest.mark.usefixtures("torch_one_thread")
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = [r["text"] for r in islice(load_corpus("chnsenti", "dev"), 250)]
    return texts + ["".join(r["tokens"]) for r in islice(load_corpus("pd98-ner", "dev"), 250)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus) -> Path:
    config = replace(QUICK, max_steps=24)
    return pretrain_mlm(corpus, tmp_path_factory.mktemp("mlm"), config, progress=False)


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


def test_loss_decreases(trained):
    log = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(4, 25, 4))
    first, last = log[0]["loss"], log[-1]["loss"]
    assert last < first - 0.5, (first, last)
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["steps"] == 24 and summary["config"]["shape"] == "mini" and summary["steps_per_s"] > 0


def test_checkpoint_reloads_through_auto_classes_with_identical_logits(trained):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from zhkd.distill.students import build_model

    model = AutoModelForMaskedLM.from_pretrained(str(trained), use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(trained))
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 128
    assert model.config.vocab_size == len(tokenizer)
    # The tokenizer splits Chinese into the characters of vocab.txt.
    vocab = (trained / "vocab.txt").read_text("utf-8").splitlines()
    encoded = tokenizer("酒店的服务很好", return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]) == ["[CLS]", *"酒店的服务很好", "[SEP]"]
    assert all(vocab[i] == t for i, t in zip(encoded["input_ids"][0].tolist(),
                                               tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]), strict=True))
    # The same weights loaded into a freshly built model of the shape give the same logits.
    rebuilt = build_model("mini", kind="mlm", vocab_size=len(vocab), pad_token_id=tokenizer.pad_token_id)
    rebuilt.load_state_dict(weights(trained), strict=False)
    rebuilt.tie_weights()
    rebuilt.eval()
    with torch.inference_mode():
        assert torch.equal(model(**encoded).logits, rebuilt(**encoded).logits)
        # and trained weights differ from a fresh initialisation
        fresh = build_model("mini", kind="mlm", vocab_size=len(vocab)).eval()
        assert not torch.equal(model(**encoded).logits, fresh(**encoded).logits)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, corpus):
    config = replace(QUICK, max_steps=6)
    first = pretrain_mlm(corpus, tmp_path / "first", config, progress=False)
    again = pretrain_mlm(corpus, tmp_path / "again", config, progress=False)
    other = pretrain_mlm(corpus, tmp_path / "other", replace(config, seed=1), progress=False)
    assert same_weights(first, again)
    assert not same_weights(first, other)


def test_pretraining_leaves_the_global_rng_alone(tmp_path, corpus):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pretrain_mlm(corpus[:50], tmp_path / "m", replace(QUICK, max_steps=2), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_resume_after_an_interruption_ends_with_the_same_weights(tmp_path, corpus, monkeypatch):
    import zhkd.distill.pretrain as pretrain

    config = replace(QUICK, max_steps=10, save_every=4)
    straight = pretrain_mlm(corpus, tmp_path / "straight", config, progress=False)

    real_loss, calls = pretrain._mlm_loss, []

    def failing_loss(*args):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(pretrain, "_mlm_loss", failing_loss)
    with pytest.raises(KeyboardInterrupt):
        pretrain_mlm(corpus, tmp_path / "resumed", config, progress=False)
    checkpoint = tmp_path / "resumed" / "checkpoints" / "000001"
    assert json.loads((checkpoint / "state.json").read_text())["step"] == 4
    assert not list(checkpoint.glob("*.pt"))  # safetensors only
    monkeypatch.setattr(pretrain, "_mlm_loss", real_loss)
    changed = replace(config, lr=5e-4)
    before = {p: p.read_bytes() for p in (tmp_path / "resumed").rglob("*") if p.is_file()}
    with pytest.raises(DistillError, match="other input or settings"):
        pretrain_mlm(corpus, tmp_path / "resumed", changed, resume=True, progress=False)
    after = {p: p.read_bytes() for p in (tmp_path / "resumed").rglob("*") if p.is_file()}
    assert after == before  # refused before anything was written (the vocabulary included)
    pretrain_mlm(corpus, tmp_path / "resumed", config, resume=True, progress=False)
    assert same_weights(straight, tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "checkpoints").exists()
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["resumed_at_step"] == 4


def test_masking_takes_whole_units_and_keeps_special_tokens(tmp_path):
    import torch

    from zhkd.models import char_vocab, save_char_tokenizer

    texts = ["我们今天去北京天安门广场玩", "这家酒店的服务很好，价格也便宜。", "人民日报社论"] * 40
    tokenizer = save_char_tokenizer(char_vocab(texts), tmp_path)
    blocks = pack_blocks(encode_texts(tokenizer, texts, whole_word=True), 64, tokenizer.cls_token_id,
                         tokenizer.sep_token_id)
    assert all(len(ids) <= 64 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
               for ids, _ in blocks)
    ids, _, units = collate(blocks, tokenizer.pad_token_id)
    corrupted, chosen = mask_batch(ids, units, mask_id=tokenizer.mask_token_id, candidate_ids=torch.arange(5, 40),
                                   mask_prob=0.15, generator=torch.Generator().manual_seed(0))
    special = torch.isin(ids, torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]))
    assert not chosen[special].any() and torch.equal(corrupted[~chosen], ids[~chosen])
    for row in range(len(blocks)):  # a unit (a jieba word) is masked entirely or not at all
        for unit in units[row].unique().tolist():
            if unit >= 0:
                picked = chosen[row][units[row] == unit]
                assert picked.all() or not picked.any()
    assert (units[0] == units[0][1]).sum() > 1  # 我们 is one unit
    share = chosen.sum() / (~special).sum()
    assert 0.08 < share < 0.25
    masked = (corrupted[chosen] == tokenizer.mask_token_id).float().mean()
    assert 0.65 < masked < 0.92


def test_character_masking_rate_and_split():
    import torch

    ids = torch.randint(5, 1000, (64, 128))
    units = torch.arange(128).repeat(64, 1)
    corrupted, chosen = mask_batch(ids, units, mask_id=4, candidate_ids=torch.arange(5, 1000), mask_prob=0.15,
                                   generator=torch.Generator().manual_seed(0))
    assert abs(chosen.float().mean() - 0.15) < 0.01
    kept = (corrupted[chosen] == ids[chosen]).float().mean()
    masked = (corrupted[chosen] == 4).float().mean()
    assert abs(masked - 0.8) < 0.02 and 0.08 < kept < 0.13  # 10% kept, plus random draws equal to the original


def test_long_text_is_cut_into_blocks():
    blocks = pack_blocks([(list(range(10, 30)), list(range(20)))], 8, 2, 3)
    assert [len(ids) for ids, _ in blocks] == [8, 8, 8, 4]
    assert [t for ids, _ in blocks for t in ids[1:-1]] == list(range(10, 30))


def test_read_texts_plain_and_jsonl(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("第一行\n\n  第二行  \n", encoding="utf-8")
    rows = write_jsonl(tmp_path / "b.jsonl", [{"text": "甲", "text_pair": "乙"}, {"tokens": ["丙", "丁"]},
                                              {"label": "positive"}])
    counts: dict[str, int] = {}
    assert list(read_texts([plain, rows], counts)) == ["第一行", "第二行", "甲", "乙", "丙丁"]
    assert counts["dropped"] == 1
    (tmp_path / "bad.jsonl").write_text('{"text": "好"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DistillError, match=r"bad.jsonl:2: not a JSON row"):
        list(read_texts([tmp_path / "bad.jsonl"]))


def test_cli_pretrains_from_the_bundled_files_and_refuses_bad_input(tmp_path):
    out = tmp_path / "mlm"
    args = ("pretrain", "--input", corpus_path("chnsenti", "dev"), "--output", out, "--shape", "mini",
            "--max-steps", "3", "--batch-size", "8", "--max-length", "32", "--vocab-size", "600", "--whole-word")
    result = run_zhkd(*args, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "pre-trained a mini MLM" in result.stdout
    weights_before = (out / "model.safetensors").read_bytes()
    again = run_zhkd(*args, env=ONE_THREAD)
    assert again.returncode == 2 and "holds a finished pre-training" in again.stderr
    assert run_zhkd(*args, "--resume", env=ONE_THREAD).returncode == 0  # the same run, complete: nothing to do
    assert (out / "model.safetensors").read_bytes() == weights_before
    assert len((out / "vocab.txt").read_text("utf-8").splitlines()) == 600
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "log.jsonl", "summary.json"} <= {
        p.name for p in out.iterdir()}
    for args, message in (
        (["--input", tmp_path / "missing.txt"], "missing.txt: no such file"),
        (["--input", "x.txt", "--shape", "huge"], "unknown shape 'huge'"),
        (["--input", "x.txt", "--max-length", "1024", "--shape", "mini"], "exceeds the mini shape's positions"),
    ):
        refused = run_zhkd("pretrain", *args, "--output", tmp_path / "never")
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().splitlines()[-1].startswith("zhkd pretrain: error:")
        assert message in refused.stderr


def test_heldout_accuracy_is_fixed_by_its_seed_and_rises_with_training(tmp_path, corpus, trained):
    from zhkd.distill.pretrain import heldout_accuracy
    from zhkd.distill.students import build_model
    from zhkd.models import load_model, load_tokenizer

    heldout = [r["text"] for r in islice(load_corpus("chnsenti", "test"), 60)]
    model, tokenizer = load_model("mlm", trained), load_tokenizer(trained)
    first = heldout_accuracy(model, tokenizer, heldout, max_length=64, seed=3)
    assert heldout_accuracy(model, tokenizer, heldout, max_length=64, seed=3) == first  # same masks, same figure
    assert first["masked"] > 100 and 0 <= first["accuracy"] <= 1 and first["texts"] == 60
    untrained = build_model("mini", kind="mlm", vocab_size=len(tokenizer), pad_token_id=0, seed=0)
    assert heldout_accuracy(untrained, tokenizer, heldout, max_length=64, seed=3)["accuracy"] < first["accuracy"]


def test_cli_starts_from_word_vectors_and_reports_heldout_accuracy(tmp_path):
    import gzip
    import pickle

    from zhkd.distill.wordvectors import convert
    from zhkd.models import load_model, load_tokenizer

    source = tmp_path / "test.model"
    with gzip.open(source, "wb") as f:
        pickle.dump((["的 " + " ".join(["0.5"] * 8), "好 " + " ".join(["-0.5", "0.5"] * 4)], {}, {}), f)
    convert(source, tmp_path / "vec.safetensors")
    out = tmp_path / "mlm"
    result = run_zhkd("pretrain", "--input", corpus_path("chnsenti", "dev"), "--output", out, "--shape", "mini",
                      "--max-steps", "2", "--batch-size", "8", "--max-length", "32", "--vocab-size", "600",
                      "--char-vectors", tmp_path / "vec.safetensors", "--heldout", corpus_path("chnsenti", "test"),
                      env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["char_vectors"]["initialised"] == 2 and len(summary["char_vectors"]["file_sha256"]) == 64
    assert summary["heldout"]["texts"] == 1736 and f"held-out masked accuracy {summary['heldout']['accuracy']}" \
        in result.stdout

    model, vocab = load_model("mlm", out), load_tokenizer(out).get_vocab()
    assert {"的", "好"} <= set(vocab) and model.get_input_embeddings().weight.shape[0] == 600
    missing = run_zhkd("pretrain", "--input", corpus_path("chnsenti", "dev"), "--output", tmp_path / "never",
                       "--shape", "mini", "--max-steps", "1", "--char-vectors", tmp_path / "none.safetensors")
    assert missing.returncode == 2 and "no word-vector file" in missing.stderr


def test_a_continued_run_starts_from_the_checkpoints_weights_and_keeps_its_vocabulary(tmp_path, corpus, trained):
    from zhkd.distill.pretrain import fingerprint

    # A learning rate this small leaves the weights where they started: the run began from `trained`'s.
    still = replace(QUICK, shape="small", init=str(trained), max_steps=2, lr=1e-12)
    out = pretrain_mlm(corpus[:200], tmp_path / "still", still, progress=False)
    before, after = weights(trained), weights(out)
    assert before.keys() == after.keys()
    assert all(float((before[k] - after[k]).abs().max()) < 1e-6 for k in before)
    assert (out / "vocab.txt").read_text("utf-8") == (trained / "vocab.txt").read_text("utf-8")
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["init"]["layers"] == 2 and summary["vocab_size"] == len((trained / "vocab.txt").read_text(
        "utf-8").splitlines())  # mini's 2 layers, not the `small` shape named beside it

    moved = pretrain_mlm(corpus[:200], tmp_path / "moved", replace(still, lr=1e-3), progress=False)
    assert not same_weights(trained, moved)
    # The weights it continues are part of the run's identity: other weights at the same path, another run.
    assert fingerprint(corpus, replace(still, init=str(out))) != fingerprint(corpus, replace(still, init=str(moved)))


def test_a_continued_run_refuses_a_vocabulary_or_embeddings_of_its_own(trained):
    for change in ({"vocab_size": 600}, {"min_count": 2}, {"char_vectors": str(trained / "model.safetensors")}):
        with pytest.raises(DistillError, match="keeps the checkpoint's vocabulary"):
            replace(QUICK, init=str(trained), **change)


def test_cli_continues_a_checkpoint_and_never_writes_into_it(tmp_path, trained):
    out = tmp_path / "further"
    base = ("pretrain", "--input", corpus_path("chnsenti", "dev"), "--max-steps", "2", "--batch-size", "8",
            "--max-length", "32")
    result = run_zhkd(*base, "--init", trained, "--output", out, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert f"pre-trained {trained} further" in result.stdout and (out / "model.safetensors").is_file()
    weights_before = (trained / "model.safetensors").read_bytes()
    for extra, message in ((["--output", trained], "also an input"),
                           (["--output", tmp_path / "never", "--shape", "mini"], "--shape and --init exclude"),
                           (["--output", tmp_path / "never", "--max-length", "1024"], "exceeds --init's")):
        refused = run_zhkd(*base, "--init", trained, *extra, env=ONE_THREAD)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert message in refused.stderr.strip().splitlines()[-1]
    assert (trained / "model.safetensors").read_bytes() == weights_before
