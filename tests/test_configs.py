"""Each config dataclass checks itself when it is made: a library caller and the command line get the
same one-line error (a ZhkdError), before anything is read or written."""

from __future__ import annotations

import pytest

from zhkd.errors import ZhkdError


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _train(epochs=0), "--epochs must be at least 1"),
    (lambda: _train(max_steps=0), "--max-steps must be at least 1"),
    (lambda: _train(lr=0.0), "--lr must be positive"),
    (lambda: _train(warmup=1.5), "--warmup is a fraction"),
    (lambda: _build(num_shards=0), "--num-shards must be at least 1"),
    (lambda: _build(num_aug=-1), "--num-aug must not be negative"),
    (lambda: _build(task="sentiment"), "unknown task 'sentiment'"),
    (lambda: _build(min_confidence=2.0), "--min-confidence is a probability"),
    (lambda: _latency(runs=0), "--runs must be at least 1"),
    (lambda: _latency(devices=("tpu",)), "--devices takes cpu and cuda"),
    (lambda: _pretrain(log_every=0), "--log-every must be at least 1"),
    (lambda: _finetune(init="scratch"), "--init scratch needs --shape"),
    (lambda: _finetune(shape="mini"), "--shape and --tokenizer go with --init scratch"),
    (lambda: _distil(stages=("kd", "pre")), "the pre stage needs --train"),
    (lambda: _distil(stages=("kd", "kd")), "names a stage twice"),
    (lambda: _distil(stages=("warmup",)), "choose from pre,kd,post"),
    (lambda: _distil(data=None), "missing --data"),
    (lambda: _distil(student="auto"), "--student auto needs --speedup or --max-params"),
    (lambda: _distil(stages=("pre",), train="train.jsonl"), "give --task"),
])
def test_a_bad_setting_is_refused_when_the_config_is_made(make, message):
    with pytest.raises(ZhkdError, match=message):
        make()


def test_distil_defaults_to_the_stage_table_in_its_order():
    from zhkd.distill import distil as module

    assert _distil().stages == ("kd",)
    assert _distil(train="train.jsonl").stages == ("pre", "kd", "post")
    assert _distil(train="train.jsonl", stages=("post", "pre"), task="ner").stages == ("pre", "post")
    module.register_stage("polish", module.GOLD, lambda plan: None)
    try:
        assert _distil(train="train.jsonl").stages == ("pre", "kd", "post", "polish")
    finally:
        module.STAGES.pop("polish")


def _train(**kw):
    from zhkd.distill.config import TrainConfig

    return TrainConfig(**kw)


def _build(**kw):
    from zhkd.pipelines.build_config import BuildConfig

    return BuildConfig(**{"task": "classification", "inputs": ("in.jsonl",), "output": "out", "teacher": "t", **kw})


def _latency(**kw):
    from zhkd.distill.evaluate import LatencySettings

    return LatencySettings(**kw)


def _pretrain(**kw):
    from zhkd.distill.pretrain import PretrainConfig

    return PretrainConfig(**kw)


def _finetune(**kw):
    from zhkd.distill.finetune import FinetuneConfig

    return FinetuneConfig(**{"task": "multilabel", "train": "train.jsonl", "init": "some/checkpoint",
                             "output": "out", **kw})


def _distil(**kw):
    from zhkd.distill.distil import DistilConfig

    return DistilConfig(**{"teachers": ("teacher",), "student": "mini", "output": "out", "data": "soft", **kw})
