"""The trainer and its commands: it learns, resumes exactly, refuses bad data, selects teachers."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import NER_LABELS, SENTIMENT_LABELS
from distill_support import label_with_teacher, read_log, write_subset
from safetensors.torch import load_file, save_file

from zhkd.cli import main
from zhkd.distill import train as train_module
from zhkd.distill.checkpoints import DIR as CHECKPOINTS
from zhkd.distill.collate import Collator
from zhkd.distill.config import LossConfig, TrainConfig
from zhkd.distill.errors import DistillError
from zhkd.distill.predict import predict_logits, read_task_rows
from zhkd.distill.reader import ShardReader
from zhkd.distill.selection import dev_report, select_teacher
from zhkd.distill.students import build_model
from zhkd.distill.train import JsonlLog, Run, Stage, run_stages
from zhkd.models import load_model, load_tokenizer

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("splits")
    return {"train": write_subset(root / "train.jsonl", "chnsenti", "train", 600),
            "dev": write_subset(root / "dev.jsonl", "chnsenti", "dev", 200)}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, splits):
    """A `mini` teacher fine-tuned from scratch on 600 real reviews with `zhkd finetune` (char vocabulary)."""
    out = tmp_path_factory.mktemp("teacher") / "model"
    code = main(["finetune", "--task", "classification", "--train", str(splits["train"]), "--dev", str(splits["dev"]),
                 "--init", "scratch", "--shape", "mini", "--output", str(out), "--epochs", "3", "--batch-size", "32",
                 "--lr", "3e-3", "--max-length", "64"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def soft_labels(tmp_path_factory, splits, teacher):
    return label_with_teacher(tmp_path_factory.mktemp("soft") / "data", "classification", splits["train"], teacher)


def test_finetune_from_scratch_learns_and_writes_a_hf_checkpoint(teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    summary = read_log(teacher)
    devs = [e["score"] for e in summary if e["event"] == "dev"]
    assert len(devs) == 3 and devs[-1] >= 0.65  # one per epoch; a mini model from scratch learns sentiment
    model = AutoModelForSequenceClassification.from_pretrained(str(teacher))
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert AutoTokenizer.from_pretrained(str(teacher)).tokenize("很好")[0] == "很"
    assert not (teacher / CHECKPOINTS).exists() and (teacher / "stages" / "finetune" / "model.safetensors").exists()


def test_distilled_student_beats_untrained_and_reloads_identically(tmp_path, soft_labels, splits, teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = load_tokenizer(teacher)
    dev_rows, _ = read_task_rows(splits["dev"], "classification", SENTIMENT_LABELS)
    student = build_model("mini", kind="sequence", vocab_size=len(tokenizer), labels=SENTIMENT_LABELS, seed=1)
    untrained = dev_report(student, tokenizer, dev_rows, "classification", SENTIMENT_LABELS)["score"]
    reader = ShardReader(soft_labels, seed=0)
    stage = Stage("kd", reader, Collator("classification", tokenizer, max_length=64, stored_ids=True),
                  TrainConfig(epochs=3, batch_size=32, lr=3e-3, max_length=64), distilling=True,
                  loss=LossConfig(temperature=2.0))
    run = Run(tmp_path, "classification", SENTIMENT_LABELS, tokenizer, dev_rows, JsonlLog(tmp_path / "log.jsonl"))
    summary = run_stages(student, [stage], run)
    distilled = summary["stages"]["kd"]["dev"]["score"]
    assert distilled >= untrained + 0.1 and distilled >= 0.62, (untrained, distilled)
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path))
    rows = dev_rows[:20]
    assert predict_logits(reloaded, AutoTokenizer.from_pretrained(str(tmp_path)), rows, "classification") == \
        predict_logits(student, tokenizer, rows, "classification")


def distill_args(data, teacher, splits, out, *extra):
    return ["distill", "--data", str(data), "--teacher", str(teacher), "--student", "mini", "--output", str(out),
            "--stages", "pre,kd", "--train", str(splits["train"]), "--dev", str(splits["dev"]), "--max-steps", "6",
            "--batch-size", "8", "--max-length", "48", "--save-every", "2", "--lr", "1e-3", *extra]


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, monkeypatch, soft_labels, splits, teacher):

    torch.use_deterministic_algorithms(True)
    try:
        assert main(distill_args(soft_labels, teacher, splits, tmp_path / "whole")) == 0
        real_save = train_module.save_checkpoint

        def crash_after_kd_step_4(model, run, position, *args):
            real_save(model, run, position, *args)
            if position == {"stage": "kd", "step": 4, "done": position["done"]}:
                raise KeyboardInterrupt

        monkeypatch.setattr(train_module, "save_checkpoint", crash_after_kd_step_4)
        assert main(distill_args(soft_labels, teacher, splits, tmp_path / "cut")) == 130
        monkeypatch.undo()
        assert (tmp_path / "cut" / "checkpoints").exists() and not (tmp_path / "cut" / "summary.json").exists()
        before = {p: p.read_bytes() for p in (tmp_path / "cut").rglob("*") if p.is_file()}
        assert main(distill_args(soft_labels, teacher, splits, tmp_path / "cut")) == 2  # refuses without --resume
        # the saved order was plain shuffling: resuming with rows grouped by length would replay other rows
        assert main([*distill_args(soft_labels, teacher, splits, tmp_path / "cut"), "--resume",
                     "--group-by-length"]) == 2
        assert {p: p.read_bytes() for p in (tmp_path / "cut").rglob("*") if p.is_file()} == before
        assert main([*distill_args(soft_labels, teacher, splits, tmp_path / "cut"), "--resume"]) == 0
    finally:
        torch.use_deterministic_algorithms(False)
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    events = read_log(tmp_path / "cut")
    resume = next(e for e in events if e["event"] == "resume")
    assert resume["stage"] == "kd" and resume["step"] == 4 and "pre" in resume["done"]
    stage_scores = {e["stage"]: e["dev"]["score"] for e in events if e["event"] == "stage_end"}
    assert set(stage_scores) == {"pre", "kd"}  # pre ran before the cut, kd after it
    assert main([*distill_args(soft_labels, teacher, splits, tmp_path / "cut"), "--resume"]) == 0  # complete: no-op


def test_stage_steps_split_one_budget_across_the_stages(tmp_path, soft_labels, splits, teacher, capsys):
    args = distill_args(soft_labels, teacher, splits, tmp_path / "split")
    args[args.index("--stages") + 1] = "pre,kd,post"
    assert main([*args, "--stage-steps", "pre=2,kd=5,post=1", "--save-every", "100"]) == 0
    ends = {e["stage"]: e["steps"] for e in read_log(tmp_path / "split") if e["event"] == "stage_end"}
    assert ends == {"pre": 2, "kd": 5, "post": 1}  # --max-steps 6 applies to no stage named here
    for bad, message in (("post=3", "not among the stages"), ("pre=0", "STAGE=N"), ("pre=2,pre=3", "twice")):
        plain = distill_args(soft_labels, teacher, splits, tmp_path / f"bad-{len(message)}")
        assert main([*plain, "--stage-steps", bad]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / f"bad-{len(message)}").exists()  # refused before anything is written


def test_distill_refuses_a_dataset_with_other_labels(tmp_path, soft_labels, splits, tiny_tagger, capsys):
    assert main(distill_args(soft_labels, tiny_tagger, splits, tmp_path / "out")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # The tagger loaded as a classifier first says what it initialised afresh, then the run is refused.
    assert lines[0].startswith("sequence model from") and "freshly initialised" in lines[0]
    error = lines[-1]
    assert error.startswith("zhkd distill: error: label names differ") and "positive" in error


def test_distill_refuses_a_partial_dataset(tmp_path, soft_labels, splits, teacher, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(soft_labels, partial)
    (partial / "COMPLETED").unlink()
    assert main(distill_args(partial, teacher, splits, tmp_path / "out")) == 2
    assert "COMPLETED: missing" in capsys.readouterr().err


def test_teacher_selection_by_score_then_calibration(tmp_path, splits, teacher, tiny_classifier):
    dev_rows, _ = read_task_rows(splits["dev"], "classification", SENTIMENT_LABELS)
    chosen, figures = select_teacher([tiny_classifier, teacher], dev_rows, "classification", SENTIMENT_LABELS)
    assert chosen == str(teacher) and figures[1]["score"] > figures[0]["score"]
    # A copy whose classifier is scaled by 3 predicts the same labels (same score) but is more confident.
    sharper = tmp_path / "sharper"
    shutil.copytree(teacher, sharper)
    weights = load_file(str(sharper / "model.safetensors"))
    weights["classifier.weight"] *= 3
    weights["classifier.bias"] *= 3
    save_file(weights, str(sharper / "model.safetensors"), metadata={"format": "pt"})
    events = []
    chosen, figures = select_teacher([sharper, teacher], dev_rows, "classification", SENTIMENT_LABELS,
                                     log=events.append)
    assert figures[0]["score"] == figures[1]["score"] and figures[0]["ece"] != figures[1]["ece"]
    assert chosen == min(figures, key=lambda f: f["ece"])["teacher"]
    assert events[0]["event"] == "select_teacher" and len(events[0]["candidates"]) == 2


def test_finetune_a_tagger_from_an_mlm_and_distil_ner(tmp_path, tiny_mlm, tiny_tagger, capfd, caplog):
    from transformers import AutoModelForTokenClassification

    train = write_subset(tmp_path / "ner.jsonl", "pd98-ner", "dev", 60)
    out = tmp_path / "tagger"
    capfd.readouterr()
    assert main(["finetune", "--task", "ner", "--train", str(train), "--dev", str(train), "--init", str(tiny_mlm),
                 "--labels", ",".join(NER_LABELS), "--output", str(out), "--max-steps", "1", "--lr", "1e-9",
                 "--batch-size", "4", "--max-length", "64"]) == 0
    # The console names the fresh head in one line, instead of transformers' table of every weight.
    console = capfd.readouterr()
    lines = (console.out + console.err + caplog.text).splitlines()  # pytest takes log records aside
    assert not any(word in line for line in lines for word in ("LOAD REPORT", "UNEXPECTED", "MISSING"))
    assert [line for line in lines if "initialised" in line] == [
        f"token model from {tiny_mlm}: freshly initialised classifier (bias, weight); "
        "not used: 5 checkpoint weights under cls.predictions"]
    tagger = AutoModelForTokenClassification.from_pretrained(str(out))
    mlm = load_model("mlm", tiny_mlm)
    assert [tagger.config.id2label[i] for i in range(len(NER_LABELS))] == NER_LABELS
    # The encoder came from the MLM (one step at lr 1e-9 barely moves it).
    dense = tagger.bert.encoder.layer[1].output.dense.weight
    assert torch.allclose(dense, mlm.bert.encoder.layer[1].output.dense.weight, atol=1e-6)
    data = label_with_teacher(tmp_path / "data", "ner", train, tiny_tagger, num_shards=2)
    assert main(["distill", "--data", str(data), "--teacher", str(tiny_tagger), "--student", "mini",
                 "--output", str(tmp_path / "student"), "--dev", str(train), "--max-steps", "3",
                 "--batch-size", "8", "--max-length", "64"]) == 0
    events = read_log(tmp_path / "student")
    assert {e["stage"] for e in events if e["event"] == "stage_end"} == {"kd"}
    assert next(e for e in events if e["event"] == "distill")["stored_input_ids"] is True
    assert all(e["soft"] is not None and e["soft"] >= 0 for e in events if e["event"] == "step")


def test_a_failed_load_still_shows_transformers_report_that_explains_it(tiny_classifier, caplog):
    """Three labels asked of a two-label checkpoint, without leave to re-initialise the head: transformers
    refuses, and its report (held back on success) is shown, since its error message points to it."""
    with pytest.raises(RuntimeError, match="above report"):
        load_model("sequence", tiny_classifier, num_labels=3)
    assert "LOAD REPORT" in caplog.text and "classifier.weight" in caplog.text


def test_bf16_autocast_trains_float32_weights_and_the_log_says_so(tmp_path, soft_labels, splits, teacher):
    out = tmp_path / "bf16"
    assert main([*distill_args(soft_labels, teacher, splits, out), "--precision", "bf16"]) == 0
    events = read_log(out)
    assert [e["precision"] for e in events if e["event"] == "stage_start"] == ["bfloat16", "bfloat16"]
    steps = [e for e in events if e["event"] == "step"]
    assert steps and all(e["soft"] is None or 0 <= e["soft"] < 1e3 for e in steps)
    assert all(v.dtype == torch.float32 for v in load_file(str(out / "model.safetensors")).values())
    with pytest.raises(DistillError, match="precision 'fp8'"):
        TrainConfig(precision="fp8")


def test_a_stage_reads_the_device_once_per_log_line_not_every_step(tmp_path, monkeypatch, soft_labels, teacher):
    import sys

    reads = []

    def spy_on(name):
        real = getattr(torch.Tensor, name)

        def spy(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename.endswith(("distill/train.py", "distill/losses.py")):
                reads.append(name)
            return real(self, *args, **kwargs)
        return spy

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):  # each makes the host wait
        monkeypatch.setattr(torch.Tensor, name, spy_on(name))
    tokenizer = load_tokenizer(teacher)
    student = build_model("mini", kind="sequence", vocab_size=len(tokenizer), labels=SENTIMENT_LABELS, seed=1)
    stage = Stage("kd", ShardReader(soft_labels, seed=0), Collator("classification", tokenizer, max_length=48,
                                                                   stored_ids=True),
                  TrainConfig(max_steps=12, batch_size=16, log_every=6), distilling=True)
    run_stages(student, [stage], Run(tmp_path, "classification", SENTIMENT_LABELS, tokenizer, None,
                                     JsonlLog(tmp_path / "log.jsonl")))
    monkeypatch.undo()
    assert reads == ["tolist", "tolist"]  # the two log lines; the 12 steps themselves never wait
    logged = [e for e in read_log(tmp_path) if e["event"] == "step"]
    assert [e["step"] for e in logged] == [6, 12] and all(e["soft"] > 0 for e in logged)


def test_checkpoints_keep_every_cuda_devices_random_state(tmp_path, monkeypatch):
    from safetensors.torch import load_file as load_tensors

    devices = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5, 6], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: devices)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    cpu = torch.get_rng_state()
    save_file(train_module.rng_tensors(), str(tmp_path / "rng.safetensors"))
    saved = load_tensors(str(tmp_path / "rng.safetensors"))
    assert sorted(saved) == ["cpu", "cuda.0", "cuda.1"]
    torch.rand(5)  # the CPU generator moves on
    run = Run(tmp_path, "classification", SENTIMENT_LABELS, None, None, JsonlLog(tmp_path / "log.jsonl"))
    train_module.restore_rng(saved, run)
    assert torch.equal(torch.get_rng_state(), cpu) and [t.tolist() for t in restored] == [[1, 2, 3], [4, 5, 6]]
    # One device cannot take two devices' state: the run goes on, and its log says dropout will differ.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    restored.clear()
    train_module.restore_rng(saved, run)
    assert restored == [] and "dropout will differ" in read_log(tmp_path)[-1]["message"]
