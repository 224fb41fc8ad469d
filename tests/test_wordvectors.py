"""Word vectors for character embeddings: converted once from the package's pickle, without running it."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from zhkd.distill.errors import DistillError
from zhkd.distill.students import build_model
from zhkd.distill.wordvectors import convert, init_embeddings, load_vectors, main
from zhkd.models import char_vocab, save_char_tokenizer

LINES = ["的 0.1 0.2 0.3 0.4", "好 0.5 -0.1 0.0 0.2", "很好 0.3 0.3 0.3 0.3", "差 -0.4 0.1 0.2 -0.3"]


def write_source(path, payload) -> None:
    with gzip.open(path, "wb") as f:
        pickle.dump(payload, f)


def test_conversion_keeps_words_vectors_and_the_source_checksum(tmp_path):
    source = tmp_path / "test.model"
    write_source(source, (LINES, {"人": "Aa01A01"}, {"Aa01A01": "人 士"}))
    meta = convert(source, tmp_path / "all.safetensors")
    words, matrix, stored = load_vectors(tmp_path / "all.safetensors")
    assert words == ["的", "好", "很好", "差"] and matrix.dtype == np.float32 and matrix.shape == (4, 4)
    assert matrix[1].tolist() == pytest.approx([0.5, -0.1, 0.0, 0.2])
    assert meta["rows"] == "4" and len(stored["source_sha256"]) == 64
    convert(source, tmp_path / "chars.safetensors", chars_only=True)
    assert load_vectors(tmp_path / "chars.safetensors")[0] == ["的", "好", "差"]


def test_a_pickle_that_names_any_global_is_refused_before_it_runs(tmp_path, capsys):
    source = tmp_path / "evil.model"
    write_source(source, (LINES, print))  # unpickling would look up builtins.print
    with pytest.raises(DistillError, match="refusing to load"):
        convert(source, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    assert main([str(source), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wordvectors: error:") and "\n" not in err


def test_embeddings_start_from_the_vectors_of_known_characters(tmp_path):
    source = tmp_path / "test.model"
    write_source(source, (LINES, {}, {}))
    convert(source, tmp_path / "vec.safetensors")
    tokenizer = save_char_tokenizer(char_vocab(["的好差不"]), tmp_path / "tok")
    model = build_model("mini", kind="mlm", vocab_size=len(tokenizer), pad_token_id=0, seed=0)
    before = model.get_input_embeddings().weight.detach().clone()
    report = init_embeddings(model, tokenizer, tmp_path / "vec.safetensors", seed=0)
    after = model.get_input_embeddings().weight.detach()
    vocab = tokenizer.get_vocab()
    assert report["initialised"] == 3 and report["width"] == 128 and report["dim"] == 4
    assert torch.equal(after[vocab["不"]], before[vocab["不"]])  # not in the vectors: left as it was
    changed = [vocab[c] for c in "的好差"]
    assert not torch.equal(after[changed], before[changed])
    # the map to the model's width is orthogonal: angles between the characters' vectors are kept
    source_vectors = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, -0.1, 0.0, 0.2], [-0.4, 0.1, 0.2, -0.3]])
    cos = source_vectors @ source_vectors.T / np.outer(*(2 * [np.linalg.norm(source_vectors, axis=1)]))
    rows = after[changed].numpy()
    assert rows @ rows.T / np.outer(*(2 * [np.linalg.norm(rows, axis=1)])) == pytest.approx(cos, abs=1e-5)


def test_a_file_that_is_not_a_vector_file_is_one_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(DistillError, match="not a safetensors word-vector file"):
        load_vectors(bad)
    with pytest.raises(DistillError, match="no word-vector file"):
        load_vectors(tmp_path / "missing.safetensors")
