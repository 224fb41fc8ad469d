"""Rebuilds that must not lose or reuse data: --overwrite keeps the old dataset until the new one is complete,
a same-size edit is a new input, no valid row publishes nothing, labels are checked before the teacher runs."""

from __future__ import annotations

import json
import os
from itertools import islice
from pathlib import Path

import pytest
import torch
from conftest import tiny_checkpoint, write_jsonl

from zhkd.cli import main
from zhkd.pipelines.corpora import load_corpus
from zhkd.shards import COMPLETED, MANIFEST


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def rows(n: int = 10) -> list[dict]:
    return [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in islice(load_corpus("chnsenti", "dev"), n)]


def build(source: Path, teacher: Path, out: Path, *extra) -> int:
    return main([str(a) for a in ["build", "--task", "classification", "--input", source, "--teacher", teacher,
                                  "--output", out, "--num-aug", "0", "--num-shards", "2", *extra]])


def dataset_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_classifier):
    root = tmp_path_factory.mktemp("rebuilds")
    source = write_jsonl(root / "rows.jsonl", rows())
    assert build(source, tiny_classifier, root / "data") == 0
    return source, root / "data"


def test_a_failed_overwrite_rebuild_leaves_the_previous_dataset_valid(built, tiny_classifier, tmp_path,
                                                                     monkeypatch):
    import shutil

    from zhkd.pipelines import sink

    source, original = built
    out = tmp_path / "data"
    shutil.copytree(original, out)
    before = dataset_bytes(out)

    def dies(*args, **kwargs):
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(sink, "write_shard", dies)
    with pytest.raises(Exception, match="the machine went away"):
        build(source, tiny_classifier, out, "--overwrite", "--seed", "7")
    monkeypatch.undo()
    assert main(["validate", str(out)]) == 0
    assert dataset_bytes(out) == before


def test_a_crash_inside_the_overwrite_swap_is_finished_by_the_next_run(built, tiny_classifier, tmp_path,
                                                                      monkeypatch, capsys):
    import shutil

    from zhkd.pipelines import storage

    source, original = built
    out = tmp_path / "data"
    shutil.copytree(original, out)
    real_move, moves = storage.move, []

    def crash_on_third_move(src, dest):
        moves.append(src)
        if len(moves) == 3:
            raise KeyboardInterrupt
        return real_move(src, dest)

    monkeypatch.setattr(storage, "move", crash_on_third_move)
    replacement = ["--overwrite", "--seed", "7", "--num-shards", "3"]
    assert build(source, tiny_classifier, out, *replacement) == 130
    monkeypatch.undo()
    assert not (out / COMPLETED).exists() and main(["validate", str(out)]) == 2
    capsys.readouterr()
    assert build(source, tiny_classifier, out, *replacement) == 0
    assert "not swapped in; finishing that" in capsys.readouterr().err
    manifest = json.loads((out / MANIFEST).read_text())
    assert main(["validate", str(out)]) == 0 and len(manifest["shards"]) == 3
    assert sorted(p.name for p in out.glob("data-*")) == [s["file"] for s in manifest["shards"]]  # no stale shard


def test_editing_an_input_without_changing_its_size_triggers_a_rebuild(built, tiny_classifier, tmp_path, capsys):
    import shutil

    source, original = built
    edited_source = tmp_path / "rows.jsonl"
    shutil.copy2(source, edited_source)
    out = tmp_path / "data"
    assert build(edited_source, tiny_classifier, out) == 0
    assert build(edited_source, tiny_classifier, out) == 0
    assert "already built" in capsys.readouterr().err
    stat = edited_source.stat()
    text = edited_source.read_text("utf-8")
    first = json.loads(text.splitlines()[0])["text"]
    changed = text.replace(first, "坏" + first[1:], 1) if first[0] != "坏" else text.replace(first, "好" + first[1:], 1)
    edited_source.write_text(changed, encoding="utf-8")
    os.utime(edited_source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same time: only the bytes differ
    assert edited_source.stat().st_size == stat.st_size
    assert build(edited_source, tiny_classifier, out) == 2
    assert "another configuration" in capsys.readouterr().err
    assert build(edited_source, tiny_classifier, out, "--overwrite") == 0
    import datasets

    assert "坏" + first[1:] in datasets.load_from_disk(str(out))["text"] or first[0] == "坏"


def test_an_input_with_no_valid_row_publishes_nothing(tiny_classifier, tmp_path, capsys):
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b'{"text": "\xff"}\n{"oops\n')
    out = tmp_path / "data"
    assert build(source, tiny_classifier, out) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("zhkd build: error: no valid row to publish: 2 rows in, 2 dead-lettered")
    assert "first: bad.jsonl:1 invalid_utf8" in line
    assert not (out / COMPLETED).exists()


def test_inferred_labels_that_do_not_fit_the_teacher_are_refused_before_it_runs(tmp_path, monkeypatch, capsys):
    from zhkd.pipelines import build as build_module

    unnamed = tiny_checkpoint(tmp_path / "teacher", "sequence")  # LABEL_0, LABEL_1: labels come from the data
    source = write_jsonl(tmp_path / "rows.jsonl", [{"text": "很好", "label": "positive"},
                                                   {"text": "很差", "label": "negative"},
                                                   {"text": "还行吧", "label": "neutral"}])

    def no_pipeline(*args, **kwargs):
        raise AssertionError("the pipeline was built")

    monkeypatch.setattr(build_module, "build_pipeline", no_pipeline)
    assert build(source, unnamed, tmp_path / "data") == 2
    assert "the data has 3 labels (negative, neutral, positive), the teacher 2" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_a_checkpoint_path_that_names_no_directory_is_one_line_not_a_repo_id_complaint(tmp_path, monkeypatch):
    from zhkd.models import ModelError, hub_reference, load_model

    for missing in (str(tmp_path / "nowhere"), "./nowhere", "runs/teachers/nowhere", "~/nowhere-zhkd"):
        with pytest.raises(ModelError, match=r"nowhere(-zhkd)?: no such checkpoint directory$"):
            hub_reference(missing)
    with pytest.raises(ModelError, match="no such checkpoint directory"):
        load_model("sequence", tmp_path / "nowhere")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "teacher").mkdir()
    assert hub_reference("~/teacher") == (str(tmp_path / "teacher"), {})


def test_a_hub_teacher_is_identified_by_its_revision(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from zhkd.models import hub_reference, weights_fingerprint

    assert hub_reference("org/model@v1") == ("org/model", {"revision": "v1"})
    assert hub_reference(tmp_path) == (str(tmp_path), {})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    unpinned = weights_fingerprint("org/model")
    assert weights_fingerprint("org/model@" + "a" * 40) == unpinned  # main resolves to that commit
    assert weights_fingerprint("org/model@v1") != unpinned
    (refs / "main").write_text("b" * 40)  # a new upload to main is a new teacher
    assert weights_fingerprint("org/model") != unpinned
