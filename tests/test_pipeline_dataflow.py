"""The build translates for Dataflow (`--dry_run`: no submission, no network). Needs the `gcp` extra."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient", reason="needs zhkd[gcp]")


def test_dataflow_dry_run_translates_the_job(tiny_classifier, tmp_path):
    from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401  (the gcp extra is importable)

    from zhkd.pipelines.build import build
    from zhkd.pipelines.build_config import BuildConfig

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "很好", "label": "positive"}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    flags = {"runner": "DataflowRunner", "project": "zhkd-test", "region": "us-central1", "job_name": "zhkd-dry-run",
             "temp_location": "gs://zhkd-test/tmp", "sdk_location": "container", "no_auth": True, "dry_run": "True"}
    log: list[str] = []
    result = build(BuildConfig(task="classification", inputs=(str(source),), output=str(out),
                               teacher=str(tiny_classifier)), flags, log=log.append)
    assert not result.built and "translated for DataflowRunner" in result.message
    assert not out.exists()  # a dry run changes nothing
