"""The output guard (zhkd/outputs.py) and the checkpoint layout (distill/checkpoints.py), without a model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from zhkd.distill.checkpoints import Checkpoints
from zhkd.outputs import (
    LOCK,
    MARKER,
    OutputError,
    claim,
    claim_run,
    inspect,
    refuse_inputs,
    replacing_files,
)


def test_a_new_or_empty_directory_is_claimed_and_marked_with_its_kind(tmp_path):
    with claim(tmp_path / "new", "finetune", settings={"lr": 1e-3}) as held:
        assert held.created
    marker = json.loads((tmp_path / "new" / MARKER).read_text())
    assert marker["kind"] == "finetune" and marker["settings"] == {"lr": 1e-3}
    assert inspect(tmp_path / "new", "finetune").ours


def test_a_file_someone_elses_directory_and_another_kind_are_refused_without_writing(tmp_path):
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(OutputError, match="file.txt: an existing file"):
        claim(tmp_path / "file.txt", "distill")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty and was not made by zhkd distill"):
        claim(foreign, "distill")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]  # no lock, no marker dropped in
    claim(tmp_path / "run", "pretrain").release()
    with pytest.raises(OutputError, match=r"holds a pre-training run \(zhkd pretrain\), not a distillation run"):
        claim(tmp_path / "run", "distill")


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "out"
    holder = textwrap.dedent(f"""
        import sys, time
        from zhkd.outputs import claim
        held = claim({str(out)!r}, "finetune", settings={{}})
        print("held", flush=True)
        sys.stdin.readline()
    """)
    child = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=r"being written by another zhkd process \(pid \d+\)"):
            claim_run(out, "finetune", {}, resume=True)
    finally:
        child.communicate("\n", timeout=60)
    claim_run(out, "finetune", {}, resume=True).release()  # the lock went with the process


def test_a_resume_with_other_settings_is_refused_before_anything_is_written(tmp_path):
    claim_run(tmp_path / "run", "finetune", {"lr": 1e-3, "seed": 0}, resume=False).release()
    (tmp_path / "run" / "log.jsonl").write_text("{}\n")
    with pytest.raises(OutputError, match="interrupted fine-tuning run; pass --resume"):
        claim_run(tmp_path / "run", "finetune", {"lr": 1e-3, "seed": 0}, resume=False)
    with pytest.raises(OutputError, match=r"other settings \(lr: 0.001 -> 0.002\)"):
        claim_run(tmp_path / "run", "finetune", {"lr": 2e-3, "seed": 0}, resume=True)
    (tmp_path / "run" / "summary.json").write_text("{}")
    assert claim_run(tmp_path / "run", "finetune", {"lr": 1e-3, "seed": 0}, resume=True) is None  # complete
    with pytest.raises(OutputError, match="finished fine-tuning run"):
        claim_run(tmp_path / "run", "finetune", {"lr": 1e-3, "seed": 0}, resume=False)


def test_the_training_library_functions_claim_their_output_through_the_guard(tmp_path):
    from conftest import write_jsonl

    from zhkd.distill.distil import DistilConfig, distil
    from zhkd.distill.finetune import FinetuneConfig, finetune

    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "好", "label": "positive"},
                                                   {"text": "差", "label": "negative"}])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not made by zhkd finetune"):
        finetune(FinetuneConfig(task="classification", train=train, init="scratch", shape="mini", output=foreign))
    with pytest.raises(OutputError, match="also an input"):
        finetune(FinetuneConfig(task="classification", train=train, init="scratch", shape="mini", output=train))
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(OutputError, match="also an input"):
        distil(DistilConfig(teachers=("teacher",), student="mini", output=data, data=data))
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and not any(data.iterdir())


def test_a_resumed_training_run_must_have_the_same_config_and_the_same_inputs(tmp_path):
    from conftest import write_jsonl

    from zhkd.distill.config import TrainConfig
    from zhkd.distill.finetune import FinetuneConfig
    from zhkd.distill.runs import prepare_output, run_settings

    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "好", "label": "positive"}])

    def config(**training):
        return FinetuneConfig(task="classification", train=train, init="scratch", shape="mini",
                              output=tmp_path / "run", resume=True, training=TrainConfig(**training))

    settings = run_settings(config(lr=1e-3), [train])
    assert settings["training.lr"] == 1e-3 and settings["labels"] is None
    assert not {"output", "resume", "training.num_workers"} & set(settings)
    assert json.loads(json.dumps(settings)) == settings  # what the marker holds compares equal after reading
    prepare_output(config(lr=1e-3), "finetune", inputs=[train]).release()
    (tmp_path / "run" / "log.jsonl").write_text("{}\n")
    prepare_output(config(lr=1e-3, num_workers=2), "finetune", inputs=[train]).release()  # how, not what
    with pytest.raises(OutputError, match=r"other settings \(training.lr: 0.001 -> 0.002\)"):
        prepare_output(config(lr=2e-3), "finetune", inputs=[train])
    train.write_text(train.read_text("utf-8").replace("好", "佳"), encoding="utf-8")
    with pytest.raises(OutputError, match=r"other settings \(inputs: "):
        prepare_output(config(lr=1e-3), "finetune", inputs=[train])


def test_a_failed_first_run_leaves_no_directory_behind(tmp_path):
    with pytest.raises(RuntimeError), claim(tmp_path / "out", "evaluation"):
        raise RuntimeError("the model did not load")
    assert not (tmp_path / "out").exists()
    with pytest.raises(RuntimeError), claim(tmp_path / "kept", "evaluation"):
        (tmp_path / "kept" / "evaluation.md").write_text("half")
        raise RuntimeError("later")
    assert {p.name for p in (tmp_path / "kept").iterdir()} == {"evaluation.md", MARKER, LOCK}


def test_an_output_that_is_an_input_or_holds_one_is_refused(tmp_path):
    (tmp_path / "rows.jsonl").write_text("{}\n")
    with pytest.raises(OutputError, match="also an input"):
        refuse_inputs(tmp_path / "sub" / ".." / "rows.jsonl", [tmp_path / "rows.jsonl"], directory=False)
    with pytest.raises(OutputError, match="an input inside --output"):
        refuse_inputs(tmp_path, [tmp_path / "rows.jsonl"], directory=True)
    refuse_inputs(tmp_path / "out", [tmp_path / "rows.jsonl", None, "gs://bucket/x"], directory=True)


def test_files_are_replaced_only_when_complete_and_only_if_ours(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("the user's own notes\n")
    with pytest.raises(OutputError, match="pass --overwrite"), \
            replacing_files([out], inputs=[], overwrite=False, ours=lambda p: False, command="augment"):
        pass
    with pytest.raises(OutputError, match="not a zhkd augment output"), \
            replacing_files([out], inputs=[], overwrite=True, ours=lambda p: False, command="augment"):
        pass
    with pytest.raises(RuntimeError), \
            replacing_files([out], inputs=[], overwrite=True, ours=lambda p: True, command="augment") as (f,):
        f.write("new half\n")
        raise RuntimeError("killed")
    assert out.read_text() == "the user's own notes\n" and not list(tmp_path.glob(".*partial"))
    with replacing_files([out], inputs=[], overwrite=True, ours=lambda p: True, command="augment") as (f,):
        f.write("new\n")
        assert out.read_text() == "the user's own notes\n"  # until the block ends
    assert out.read_text() == "new\n"


# --- checkpoints ------------------------------------------------------------------------------------------


def write(checkpoints: Checkpoints, step: int) -> None:
    partial = checkpoints.begin()
    (partial / "weights.bin").write_bytes(bytes([step]) * 10)
    checkpoints.commit(partial, {"step": step})


def test_checkpoints_keep_the_newest_complete_one(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.latest() is None
    write(checkpoints, 2)
    write(checkpoints, 4)
    path, state = checkpoints.latest()
    assert state == {"step": 4} and (path / "weights.bin").read_bytes() == bytes([4]) * 10
    assert [p.name for p in checkpoints.root.iterdir()] == [path.name]  # the older one went after the rename
    checkpoints.clear()
    assert not checkpoints.root.exists()


@pytest.mark.parametrize("crash", ["before_state", "before_rename", "before_removing_the_old_one"])
def test_a_crash_between_checkpoint_writes_resumes_from_the_newest_complete_checkpoint(tmp_path, crash,
                                                                                       monkeypatch):
    import os
    import shutil

    from zhkd.distill import checkpoints as module

    checkpoints = Checkpoints(tmp_path)
    write(checkpoints, 2)
    partial = checkpoints.begin()
    (partial / "weights.bin").write_bytes(bytes([4]) * 10)

    class Crash(Exception):
        pass

    def crashing(*args, **kwargs):
        raise Crash

    if crash == "before_state":
        monkeypatch.setattr(module, "fsync_file", crashing)
    elif crash == "before_rename":
        monkeypatch.setattr(os, "replace", crashing)
    else:
        monkeypatch.setattr(shutil, "rmtree", crashing)
    with pytest.raises(Crash):
        checkpoints.commit(partial, {"step": 4})
    monkeypatch.undo()
    path, state = Checkpoints(tmp_path).latest()
    expected = 4 if crash == "before_removing_the_old_one" else 2
    assert state == {"step": expected} and (path / "weights.bin").read_bytes() == bytes([expected]) * 10
    write(Checkpoints(tmp_path), 6)  # the next writer clears what the crash left
    assert [p.name for p in checkpoints.root.iterdir()] == [Checkpoints(tmp_path).latest()[0].name]
