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
from zhkd.distill.collate import Collator
from zhkd.distill.config import LossConfig, TrainConfig
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
    assert not (teacher / "checkpoint").exists() and (teacher / "stages" / "finetune" / "model.safetensors").exists()


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
        assert (tmp_path / "cut" / "checkpoint").exists() and not (tmp_path / "cut" / "summary.json").exists()
        assert main(distill_args(soft_labels, teacher, splits, tmp_path / "cut")) == 2  # refuses without --resume
        # the saved order was plain shuffling: resuming with rows grouped by length would replay other rows
        assert main([*distill_args(soft_labels, teacher, splits, tmp_path / "cut"), "--resume",
                     "--group-by-length"]) == 2
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
    error = capsys.readouterr().err.strip()
    assert error.startswith("zhkd distill: error: label names differ") and "positive" in error and "\n" not in error


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


def test_finetune_a_tagger_from_an_mlm_and_distil_ner(tmp_path, tiny_mlm, tiny_tagger, capfd):
    from transformers import AutoModelForTokenClassification

    train = write_subset(tmp_path / "ner.jsonl", "pd98-ner", "dev", 60)
    out = tmp_path / "tagger"
    assert main(["finetune", "--task", "ner", "--train", str(train), "--dev", str(train), "--init", str(tiny_mlm),
                 "--labels", ",".join(NER_LABELS), "--output", str(out), "--max-steps", "1", "--lr", "1e-9",
                 "--batch-size", "4", "--max-length", "64"]) == 0
    err = capfd.readouterr().err
    # one line naming what was initialised afresh, not transformers' table of every tensor
    assert f"zhkd: loaded {tiny_mlm}; initialised afresh: classifier; not used from the checkpoint: cls.predictions" \
        in err
    assert "LOAD REPORT" not in err and "UNEXPECTED" not in err and "MISSING" not in err
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
