"""`zhkd build` end to end on tiny random teachers: format, determinism, dead letter, NER, reruns.

Beam start-up is slow, so each build runs once per module and the tests share its output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import run_zhkd

from zhkd.outputs import MARKER, OutputError
from zhkd.pipelines.corpora import load_corpus
from zhkd.pipelines.outputs import STAGING, plan_output
from zhkd.pipelines.packed_forward import OneDnnProducts
from zhkd.shards import COMPLETED, MANIFEST, shard_name

NUM_SHARDS = 4
LONG_ROWS = 8
BAD_JSONL = [
    b'{"text": "\xe5\x9d\x8f", "label": ',  # malformed_json
    b"[1, 2]",  # malformed_json (not an object)
    b'{"text": "\xff\xfe\xe5\xa5\xbd", "label": "positive"}',  # invalid_utf8
    b'{"label": "positive"}',  # missing_field
    b'{"text": 12345, "label": "positive"}',  # malformed_row
    b'{"text": "   ", "label": "negative"}',  # empty_text
    ('{"text": "%s", "label": "negative"}' % ("\u957f" * 600)).encode(),  # text_too_long
    '{"text": "还行吧", "label": "neutral"}'.encode(),  # unknown_label
    '{"text": "一般般吧"}'.encode(),  # missing_label
    '{"id": "dup", "text": "房间很大", "label": "positive"}'.encode(),
    '{"id": "dup", "text": "房间很小", "label": "negative"}'.encode(),  # duplicate_id
    b"",  # a blank line: counted, not a row
    '{"text": "服务\\u0007很好\\u0000", "label": "positive"}'.encode(),  # control characters stripped
]
BAD_CSV = 'text,label\n早餐不错,positive\n"多行\n文本",negative\na,b,c\n"bad"quote,negative\n'.encode() + \
    b"\xff\xfe,positive\n"
CLS_REASONS = {"malformed_json": 2, "invalid_utf8": 2, "missing_field": 1, "malformed_row": 1, "empty_text": 1,
               "text_too_long": 1, "unknown_label": 1, "missing_label": 1, "duplicate_id": 1, "malformed_csv": 2}
BAD_NER = [
    {"tokens": ["张", "三"], "tags": ["B-PER"]},  # length_mismatch
    {"tokens": ["张", "三"], "tags": ["O", "I-PER"]},  # invalid_bio
    {"tokens": ["张", "三"], "tags": ["B-MISC", "I-MISC"]},  # unknown_label
    {"tokens": ["张", "三"]},  # missing_label
]


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    """In-process builds pin torch's threads (--teacher-threads): give the rest of the session its own."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def long_texts(dev: list[dict], n: int) -> list[tuple[str, str]]:
    """n texts of about 500 characters (near the cap): the teacher sees full-length batches."""
    out, i = [], 0
    while len(out) < n:
        text = ""
        while len(text) < 480:
            text += dev[i % len(dev)]["text"]
            i += 1
        out.append((text[:500], dev[i % len(dev)]["label"]))
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    dev = list(load_corpus("chnsenti", "dev"))
    balanced = [r for r in dev if r["label"] == "positive"][:12] + [r for r in dev if r["label"] == "negative"][:12]
    good = [json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False).encode()
            for r in sorted(balanced, key=lambda r: r["id"])]
    good += [json.dumps({"text": t, "label": label}, ensure_ascii=False).encode()
             for t, label in long_texts(dev, LONG_ROWS)]
    (d / "senti.jsonl").write_bytes(b"\n".join(good[:12] + BAD_JSONL + good[12:]) + b"\n")
    (d / "senti.csv").write_bytes(BAD_CSV)
    ner = [{"id": r["id"], "tokens": r["tokens"], "tags": r["tags"]} for r in list(load_corpus("pd98-ner", "dev"))[:10]]
    (d / "ner.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ner + BAD_NER),
                                 encoding="utf-8")
    return {"cls": [d / "senti.jsonl", d / "senti.csv"], "ner": d / "ner.jsonl"}


def cls_args(inputs, teacher, out, *extra) -> list[str]:
    return ["build", "--task", "classification", "--input", inputs["cls"][0], "--input", inputs["cls"][1],
            "--teacher", teacher, "--output", out, "--num-shards", str(NUM_SHARDS), "--num-aug", "3", *extra]


def built(result, out: Path) -> Path:
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def build_here(args: list, log: list[str] | None = None):
    """`zhkd build ARGS` in this process (Beam's in-process runner), sparing a start-up per build."""
    import argparse

    from zhkd.commands.build import add_arguments, config_from_args
    from zhkd.pipelines.beam_options import beam_flags
    from zhkd.pipelines.build import build

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parsed = parser.parse_args([str(a) for a in args[1:]])
    return build(config_from_args(parsed), beam_flags(parsed), overwrite=parsed.overwrite,
                 num_buckets=parsed.num_buckets, log=(log.append if log is not None else lambda _: None))


@pytest.fixture(scope="module")
def reference(inputs, tiny_classifier, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "out"
    assert build_here(cls_args(inputs, tiny_classifier, out)).built
    return out


LARGER_EXAMPLES = 1500  # x (1 + 2 variants): about 4,500 rows through every stage


@pytest.fixture(scope="module")
def larger_input(tmp_path_factory) -> Path:
    """Distinct reviews of the train split, enough that each worker process handles many groups."""
    rows = list(load_corpus("chnsenti", "train"))[:LARGER_EXAMPLES]
    path = tmp_path_factory.mktemp("larger") / "reviews.jsonl"
    path.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def larger_args(source: Path, teacher, out: Path, *extra) -> list:
    return ["build", "--task", "classification", "--input", source, "--teacher", teacher, "--output", out,
            "--num-shards", "3", "--num-aug", "2", "--truncate", *extra]


@pytest.fixture(scope="module")
def ner_build(inputs, tiny_tagger, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ner") / "out"
    assert build_here(["build", "--task", "ner", "--input", inputs["ner"], "--teacher", tiny_tagger,
                       "--output", out, "--num-shards", "64", "--num-aug", "2"]).built
    return out


def manifest_of(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text("utf-8"))


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("data-*.arrow"))}


def test_loads_with_datasets_and_validates(reference, tmp_path):
    manifest = manifest_of(reference)
    ds = datasets.load_from_disk(str(reference))
    assert ds.num_rows == manifest["total_rows"] == manifest["counts"]["written"] > 0
    assert set(ds.column_names) >= {"id", "input_ids", "teacher_logits", "label", "is_original", "ops"}
    assert sorted(shard_bytes(reference)) == [shard_name(i, NUM_SHARDS) for i in range(NUM_SHARDS)]
    mapped = datasets.Dataset.from_file(str(reference / shard_name(0, NUM_SHARDS)))
    assert mapped.num_rows == manifest["shards"][0]["rows"] and len(mapped[0]["teacher_logits"]) == 2
    assert mapped["id"] == sorted(mapped["id"])
    assert not (reference / STAGING).exists() and json.loads((reference / MARKER).read_text())["kind"] == "dataset"
    card = (reference / "README.md").read_text("utf-8")
    assert "## Counts by stage" in card and (reference / "length_histogram.png").read_bytes()[:4] == b"\x89PNG"
    ok = run_zhkd("validate", reference)
    assert ok.returncode == 0 and "valid zhkd dataset" in ok.stdout

    broken = tmp_path / "broken"
    shutil.copytree(reference, broken)
    shard = broken / shard_name(1, NUM_SHARDS)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    failed = run_zhkd("validate", broken)
    assert failed.returncode != 0 and shard_name(1, NUM_SHARDS) in failed.stderr
    assert "Traceback" not in failed.stderr


def test_in_process_and_multiprocessing_give_identical_shards(larger_input, tiny_classifier, tmp_path):
    one = build_here(larger_args(larger_input, tiny_classifier, tmp_path / "one"))
    two = built(run_zhkd(*larger_args(larger_input, tiny_classifier, tmp_path / "two", "--direct_num_workers", "2",
                                      "--direct_running_mode", "multi_processing")), tmp_path / "two")
    assert one.built and manifest_of(two)["total_rows"] == one.manifest["total_rows"] > 4000
    assert shard_bytes(tmp_path / "one") == shard_bytes(two)
    assert manifest_of(two)["counts"] == one.manifest["counts"]
    assert manifest_of(two)["config_hash"] == one.manifest["config_hash"]


def test_a_local_dask_cluster_gets_several_partitions_per_worker_and_several_buckets_per_partition():
    """Tasks per stage scale with the local workers (a lone last task idles the rest), buckets with the
    partitions (Dask hashes buckets to partitions at random); a named cluster keeps one per bucket."""
    from zhkd.pipelines.build import dask_partitions, default_buckets

    assert default_buckets({}, 2, on_dask=True) == 64 and dask_partitions(64, 2) == 16
    assert default_buckets({}, 1, on_dask=True) == 32 and dask_partitions(32, 1) == 8
    assert dask_partitions(5, 2) == 5  # never more partitions than buckets
    assert default_buckets({}, 0, on_dask=True) == 8 and dask_partitions(8, 0) == 8  # a named cluster
    assert default_buckets({"direct_num_workers": "2"}, 0) == 8  # other runners as before


def test_the_bucket_count_never_changes_the_bytes(reference, inputs, tiny_classifier, tmp_path):
    out = tmp_path / "three-buckets"
    assert build_here(cls_args(inputs, tiny_classifier, out, "--num-buckets", "3")).built
    assert shard_bytes(out) == shard_bytes(reference)
    assert manifest_of(out)["counts"] == manifest_of(reference)["counts"]
    assert manifest_of(out)["config_hash"] == manifest_of(reference)["config_hash"]


def test_a_dask_build_writes_the_same_bytes_as_the_in_process_engine(reference, inputs, tiny_classifier, tmp_path):
    """A local Dask cluster of 2 worker processes; the input has dead letters and duplicate ids, so every
    leaf of the graph (shards, counts, dead letters) must have run for the build to publish."""
    pytest.importorskip("distributed", reason="needs zhkd[dask]")
    out = tmp_path / "dask"
    done = run_zhkd(*cls_args(inputs, tiny_classifier, out, "--runner", "DaskRunner", "--dask-workers", "2",
                              "--num-buckets", "5"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "local Dask cluster of 2 worker processes" in done.stderr and "Traceback" not in done.stderr
    assert shard_bytes(out) == shard_bytes(reference)
    assert manifest_of(out)["counts"] == manifest_of(reference)["counts"]
    for letters in (reference / "dead_letter").iterdir():
        assert (out / "dead_letter" / letters.name).read_bytes() == letters.read_bytes()


def test_the_manifest_records_the_device_dtype_and_forward_that_ran(reference):
    manifest = manifest_of(reference)
    teacher, config = manifest["teacher"], manifest["config"]
    assert config["device"] == teacher["device"] == "cpu" and teacher["dtype"] == "float32"
    forward = "packed-onednn" if OneDnnProducts.available() else "packed"  # tiny_classifier is a BERT
    assert teacher["ran"] == {f"cpu/float32/{forward}": manifest["counts"]["labelled"]}
    assert teacher["batch_budget"] == {"tokens": 768, "rows": 256} == {"tokens": config["batch_tokens"],
                                                                        "rows": config["max_batch_rows"]}
    assert "precision" not in teacher  # no longer a statement of what would run


def test_the_device_settles_the_batch_budget_before_hashing():
    from zhkd.pipelines.build_config import BuildConfig, resolve_device

    config = BuildConfig(task="classification", inputs=("x",), output="o", teacher="t")
    on_gpu, on_cpu = resolve_device(config, cuda_available=True), resolve_device(config, cuda_available=False)
    assert (on_gpu.device, on_gpu.batch_tokens, on_gpu.max_batch_rows) == ("cuda", 65536, 1024)
    assert (on_cpu.device, on_cpu.batch_tokens, on_cpu.max_batch_rows) == ("cpu", 768, 256)
    assert on_gpu.hashed() != on_cpu.hashed()
    named = resolve_device(BuildConfig(task="classification", inputs=("x",), output="o", teacher="t",
                                       device="cpu", batch_tokens=512), cuda_available=True)
    assert (named.device, named.batch_tokens, named.max_batch_rows) == ("cpu", 512, 256)


def test_dask_runner_by_its_short_name_and_the_client_address_pass_through():
    import argparse

    from apache_beam.options.pipeline_options import StandardOptions

    from zhkd.commands.build import add_arguments
    from zhkd.pipelines.beam_options import DASK_RUNNER, beam_flags, is_dask, make_options, names_dask_cluster

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--task", "classification", "--input", "x", "--output", "o", "--teacher", "t",
                              "--runner", "DaskRunner", "--dask_client_address", "tcp://10.0.0.5:8786"])
    flags = beam_flags(args)
    assert is_dask(flags) and names_dask_cluster(flags)
    options = make_options(flags)
    assert options.view_as(StandardOptions).runner == DASK_RUNNER
    assert options.get_all_options()["address"] == "tcp://10.0.0.5:8786"


def test_dead_letter_reasons_and_counts_reconcile(reference):
    counts = manifest_of(reference)["counts"]
    for reason, n in CLS_REASONS.items():
        lines = (reference / "dead_letter" / f"{reason}.jsonl").read_text("utf-8").splitlines()
        letters = [json.loads(line) for line in lines]
        assert len(letters) == n == counts["dead_letter"][reason], reason
        assert all(d["reason"] == reason and d["raw"] and d["source"] and d["position"] for d in letters)
    assert sum(counts["dead_letter"].values()) == counts["dead_letter_total"] == sum(CLS_REASONS.values())
    # jsonl rows (less the blank line) + csv rows
    assert counts["rows_in"] == 24 + LONG_ROWS + len(BAD_JSONL) - 1 + 5
    assert counts["blank_lines"] == 1 and counts["control_chars_stripped"] == 1
    assert counts["rows_in"] == counts["valid"] + counts["dead_letter_total"]
    assert counts["variants"]["original"] == counts["valid"]
    assert counts["variants"]["total"] - counts["duplicates"] == counts["labelled"]
    assert counts["labelled"] - counts["filtered_total"] == counts["written"]
    assert counts["written_original"] + counts["written_augmented"] == counts["written"]
    raw = json.loads((reference / "dead_letter" / "invalid_utf8.jsonl").read_text("utf-8").splitlines()[0])["raw"]
    assert "\\xff\\xfe" in raw
    ds = datasets.load_from_disk(str(reference))
    assert "服务很好" in ds["text"]  # the control characters went, the row stayed


def test_ner_logits_align_with_tokens_and_spans_survive(ner_build, tiny_tagger):
    from zhkd.models import load_model

    manifest = manifest_of(ner_build)
    counts = manifest["counts"]
    for reason in ("length_mismatch", "invalid_bio", "unknown_label", "missing_label"):
        assert counts["dead_letter"][reason] == 1, reason
    assert counts["rows_in"] == counts["valid"] + counts["dead_letter_total"] == 14
    files = sorted(ner_build.glob("data-*.arrow"))
    assert len(files) == 64 and any(s["rows"] == 0 for s in manifest["shards"])
    assert run_zhkd("validate", ner_build).returncode == 0
    ds = datasets.load_from_disk(str(ner_build))
    assert ds.num_rows == counts["written"]
    names = manifest["label_names"]
    model = load_model("token", tiny_tagger).eval()
    rows = {r["id"]: r for r in ds}
    for row in rows.values():
        n = len(row["tokens"])
        assert len(row["tags"]) == len(row["token_starts"]) == len(row["teacher_logits"]) == n
        with torch.inference_mode():
            direct = model(input_ids=torch.tensor([row["input_ids"]])).logits[0].numpy()
        starts = np.array(row["token_starts"])
        np.testing.assert_allclose(np.array(row["teacher_logits"])[starts >= 0], direct[starts[starts >= 0]],
                                   atol=1e-4)
    augmented = [r for r in rows.values() if not r["is_original"]]
    assert augmented

    def entities(row):
        tags, found = [names[t] for t in row["tags"]], []
        for i, tag in enumerate(tags):
            if tag.startswith("B-"):
                end = i + 1
                while end < len(tags) and tags[end] == "I-" + tag[2:]:
                    end += 1
                found.append((tag[2:], "".join(row["tokens"][i:end])))
        return found

    for row in augmented:
        source = rows[row["source_id"]]
        assert [t for t, _ in entities(row)] == [t for t, _ in entities(source)]
        if not any(op.startswith("convert") for op in row["ops"]):
            assert entities(row) == entities(source)


def test_rerun_is_a_no_op_and_another_config_refuses(reference, inputs, tiny_classifier):
    before = {p.name: p.stat().st_mtime_ns for p in reference.iterdir()}
    again = build_here(cls_args(inputs, tiny_classifier, reference))
    assert not again.built and "nothing to do" in again.message
    assert {p.name: p.stat().st_mtime_ns for p in reference.iterdir()} == before
    other = run_zhkd(*cls_args(inputs, tiny_classifier, reference, "--seed", "7"))
    assert other.returncode == 2 and "--overwrite" in other.stderr and "Traceback" not in other.stderr
    assert (reference / COMPLETED).exists()


def test_interrupted_run_leaves_no_completed_and_rerun_matches(reference, inputs, tiny_classifier, tmp_path,
                                                              monkeypatch):
    from zhkd.pipelines import sink

    out = tmp_path / "out"
    real_write = sink.write_sorted_shard
    written = []

    def dies_mid_write(rows, path, schema):
        if written:  # the second shard: half its bytes under the temporary name, then the process "dies"
            Path(path).with_name(f".{Path(path).name}.tmp-1").write_bytes(b"\xff" * 100)
            raise RuntimeError("killed mid-write")
        written.append(path)
        return real_write(rows, path, schema)

    monkeypatch.setattr(sink, "write_sorted_shard", dies_mid_write)
    with pytest.raises(Exception, match="killed mid-write"):
        build_here(cls_args(inputs, tiny_classifier, out))
    monkeypatch.setattr(sink, "write_sorted_shard", real_write)
    assert not (out / COMPLETED).exists() and (out / MARKER).exists()
    assert list((out / STAGING).glob("data-*.arrow"))
    with pytest.raises(Exception, match="did not finish|COMPLETED"):
        from zhkd.shards import read_manifest

        read_manifest(out)
    log: list[str] = []
    assert build_here(cls_args(inputs, tiny_classifier, out), log).built
    assert any("did not finish" in line for line in log)
    assert shard_bytes(out) == shard_bytes(reference)
    assert not list(out.glob(".*tmp*")) and not (out / STAGING).exists()


def test_label_preservation_filter_is_counted(inputs, tiny_classifier, tmp_path):
    out = tmp_path / "filtered"
    # The tiny random teacher is never confident: 0.9 filters every augmented row it agrees with.
    assert build_here(["build", "--task", "classification", "--input", inputs["cls"][0], "--teacher",
                       tiny_classifier, "--output", out, "--num-shards", "2", "--num-aug", "3",
                       "--filter-disagreement", "--min-confidence", "0.9"]).built
    manifest = manifest_of(out)
    counts, agreement = manifest["counts"], manifest["stats"]["agreement"]
    assert counts["filtered"]["disagrees_with_gold"] > 0 and counts["filtered"]["low_confidence"] > 0
    assert counts["labelled"] - counts["filtered_total"] == counts["written"] == manifest["total_rows"]
    assert counts["written_original"] == counts["valid"]  # originals are never filtered
    assert agreement["augmented"]["labelled"] == counts["variants"]["augmented"] - counts["duplicates"]
    ds = datasets.load_from_disk(str(out))
    assert ds.num_rows == counts["written"] and manifest["filter"]["active"]


def test_labels_the_teacher_does_not_name_come_from_a_first_pass_over_the_data(tmp_path):
    """A teacher with generic labels (LABEL_0, LABEL_1) and no --labels: a first pass collects the label
    values, and a count that does not fit the teacher stops the build before the teacher runs."""
    from conftest import tiny_checkpoint, write_jsonl

    from zhkd.pipelines.errors import PipelineError

    teacher = tiny_checkpoint(tmp_path / "generic", "sequence")
    pairs = (("服务很好", "好评"), ("房间太小", "差评"), ("还会再来", "好评"))
    rows = [{"text": t, "label": label} for t, label in pairs]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    result = build_here(["build", "--task", "classification", "--input", source, "--teacher", teacher,
                         "--output", tmp_path / "out", "--num-shards", "1", "--num-aug", "0"])
    assert result.built and result.manifest["label_names"] == ["好评", "差评"]
    assert result.manifest["label_source"] == "inferred from the data (sorted)"
    three = write_jsonl(tmp_path / "three.jsonl", rows + [{"text": "一般", "label": "中评"}])
    log: list[str] = []
    with pytest.raises(PipelineError, match="the data has 3 labels"):
        build_here(["build", "--task", "classification", "--input", three, "--teacher", teacher, "--output",
                    tmp_path / "out3", "--num-shards", "1", "--num-aug", "0"], log)
    assert not any("running on" in line for line in log)  # refused before the main pipeline


def test_output_plans(tmp_path):
    from zhkd.pipelines.errors import PipelineError

    empty = tmp_path / "empty"
    assert plan_output(str(empty), "h1", overwrite=False).build
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty and was not made by zhkd build"):
        plan_output(str(foreign), "h1", overwrite=True)
    done = tmp_path / "done"
    done.mkdir()
    (done / MANIFEST).write_text(json.dumps({"config_hash": "h1"}))
    (done / COMPLETED).write_text("h1\n")
    assert not plan_output(str(done), "h1", overwrite=False).build
    with pytest.raises(PipelineError, match="--overwrite"):
        plan_output(str(done), "h2", overwrite=False)
    assert "the old one stays until the new one is complete" in plan_output(str(done), "h2", overwrite=True).message
    partial = tmp_path / "partial"
    (partial / STAGING).mkdir(parents=True)
    (partial / MARKER).write_text(json.dumps({"kind": "dataset", "settings": None}))
    for digest in ("h1", "h2"):  # an unfinished build is no dataset: any configuration starts over
        assert "did not finish" in plan_output(str(partial), digest, overwrite=False).message
    (partial / STAGING / MANIFEST).write_text(json.dumps({"config_hash": "h1"}))
    (partial / STAGING / COMPLETED).write_text("h1\n")  # staged whole, not yet swapped in
    assert plan_output(str(partial), "h1", overwrite=False).recover
    assert not plan_output(str(partial), "h2", overwrite=False).recover
    model = tmp_path / "model"
    model.mkdir()
    (model / MARKER).write_text(json.dumps({"kind": "finetune", "settings": {}}))
    (model / "config.json").write_text("{}")
    with pytest.raises(OutputError, match="holds a fine-tuning run"):
        plan_output(str(model), "h1", overwrite=True)


def test_progress_line(capsys):
    from zhkd.pipelines.build_pipeline import Progress

    progress = Progress("teacher labelled", every=0.0)
    progress.add(5)
    assert "teacher labelled 5 rows" in capsys.readouterr().err


def test_counts_that_do_not_reconcile_stop_the_build(reference):
    from zhkd.pipelines.build import IntegrityError, check_reconciles

    counts = manifest_of(reference)["counts"]
    check_reconciles(counts)
    with pytest.raises(IntegrityError, match="labelled - filtered - id collisions = written"):
        check_reconciles({**counts, "written": counts["written"] - 1})


def teacher_row(row_id: str, text: str, original: bool, ops: tuple = ()):
    from zhkd.augment.example import Variant
    from zhkd.pipelines.build_pipeline import content_key
    from zhkd.pipelines.teacher import Encoding
    from zhkd.pipelines.wire import TeacherRow

    variant = Variant(row_id, row_id.split("~")[0], text, None, 1, None, None, ops, original)
    return TeacherRow.make(variant, Encoding([2, 3], None, None, False), content_key(text, None)[0], 1)


def test_keep_first_prefers_originals_then_smallest_ids():
    from zhkd.pipelines.build_pipeline import keep_first

    kept, dropped = keep_first([teacher_row("b", "你好 吗", True), teacher_row("a~1", "你好吗", False),
                                teacher_row("c", "ＡＢ", False), teacher_row("d", "ab", False),
                                teacher_row("e", "别的", False)])
    assert sorted(r.id for r in kept) == ["b", "c", "e"] and dropped == 2


def test_keep_first_never_depends_on_the_order_rows_arrive_in():
    """Two rows with one id and one normalised text (an input holding variants, augmented again) tie on
    (original, id); the row key decides, not the arrival order."""
    from zhkd.pipelines.build_pipeline import keep_first

    rows = [teacher_row("s~1", "服务很好", False, ("synonym",)), teacher_row("s~1", "服务 很好", False, ("insert",))]
    assert keep_first(rows)[0] == keep_first(rows[::-1])[0] and keep_first(rows)[1] == 1


def test_a_run_writes_only_rows_the_teacher_labelled_and_each_once(tmp_path):
    """A run joins each row's stored fields with its teacher columns by row key: fields without teacher
    columns (a duplicate or a filtered row, counted where they were dropped) are not written, and two
    identical copies of a row's fields take its one set of teacher columns once."""
    import numpy as np

    from zhkd.augment.example import Variant
    from zhkd.pipelines.build_pipeline import COUNTS, LABELS, ROWS, Write
    from zhkd.pipelines.sink import RUNS, run_name
    from zhkd.pipelines.wire import Labelled, pack_chunk, pack_floats, pack_ints, row_key
    from zhkd.shards import read_rows, schema_for

    labels = ["negative", "positive"]
    original = Variant("a", "a", "很好", None, 1, None, None, (), True)
    augmented = Variant("a~1", "a", "很 好", None, 1, None, None, ("insert",), False)
    unlabelled = Variant("b", "b", "不好", None, 0, None, None, (), True)
    logits = pack_floats(np.array([0.25, -1.5]))
    columns = [Labelled(row_key(v), pack_ints([2, 7, 3]), None, logits) for v in (original, augmented)]
    write = Write(str(tmp_path), schema_for("classification", label_names=labels), "classification", labels, 1)
    chunks = [(ROWS, pack_chunk([original, augmented, unlabelled])), (LABELS, pack_chunk(columns)),
              (ROWS, pack_chunk([augmented]))]
    out = list(write.process(((0, 0), chunks)))
    assert out[0] == ("main", (0, run_name(0, 0)))
    rows = list(read_rows(tmp_path / RUNS / run_name(0, 0)))
    assert [r["id"] for r in rows] == ["a", "a~1"]
    assert rows[0]["input_ids"] == [2, 7, 3] and rows[0]["teacher_logits"] == [0.25, -1.5]
    assert rows[1]["ops"] == ["insert"] and rows[1]["label"] == 1 and not rows[1]["is_original"]
    assert out[1][1][0] == COUNTS and dict(out[1][1][1][1])["id_collisions"] == 0


def test_dead_letters_and_every_stages_counts_ride_the_write_step_to_the_last_one(tmp_path):
    """No leaf beside the last transform (Beam's DaskRunner computes only that one): a stage's dead letters
    go to their reason's group and its tallies to the counts' group of the write step, which writes the
    dead letters and sends every count, and every shard's name, on to the shard step; there the counts'
    group writes them all."""
    from collections import Counter

    from zhkd.pipelines.build_pipeline import COUNTS, DEAD, MAIN, MergeShard, Write, read_results, tally, to_write
    from zhkd.rows import DeadLetter
    from zhkd.shards import schema_for

    letter = DeadLetter("bad_json", "in.jsonl", 3, "{", "not JSON")
    routed = [kv for element in [(MAIN, "an example"), (DEAD, letter), tally(Counter(rows_in=5)),
                                 tally(Counter(rows_in=2, blank_lines=1))] for kv in to_write(element, None)]
    assert routed == [((DEAD, "bad_json"), letter), ((COUNTS,), (("rows_in", 5),)),
                      ((COUNTS,), (("blank_lines", 1), ("rows_in", 2)))]
    schema = schema_for("classification", label_names=["negative", "positive"])
    write = Write(str(tmp_path), schema, "classification", ["negative", "positive"], 2)
    sent = list(write.process(((DEAD, "bad_json"), [letter]))) + list(write.process(
        ((COUNTS,), [value for key, value in routed if key == (COUNTS,)])))
    assert (tmp_path / "dead_letter" / "bad_json.jsonl").read_text("utf-8").count("\n") == 1
    assert [dict(value[1]) for _, (key, value) in sent if key == COUNTS] == [
        {"dead_letter/bad_json": 1}, {"rows_in": 7, "blank_lines": 1}]
    assert [key for _, (key, value) in sent if value is None] == [0, 1]  # every shard named, empty or not
    last = MergeShard(str(tmp_path), 2, schema)
    last.process((COUNTS, [value for _, (key, value) in sent if key == COUNTS]))
    for shard in (0, 1):
        last.process((shard, [None]))  # an empty shard, with its record
    results = read_results(str(tmp_path))
    assert results["counts"] == {"rows_in": 7, "blank_lines": 1, "dead_letter/bad_json": 1, "written": 0}
    assert [s["rows"] for s in results["shards"]] == [0, 0]


def test_a_teacher_groups_counts_ride_its_first_batch_to_the_judge_through_a_pickle():
    """FormBatches feeds the write step through the judge only: its group's counts travel on the first
    batch (a `RowBatch`, a list that workers pickle like any element), and the judge counts them."""
    import pickle

    from zhkd.pipelines.build_config import BuildConfig
    from zhkd.pipelines.build_pipeline import FormBatches, RowBatch
    from zhkd.pipelines.wire import pack_chunk

    config = BuildConfig(task="classification", inputs=("in.jsonl",), output="out", teacher="t", batch_tokens=2)
    rows = [teacher_row("a", "你好", True), teacher_row("a~1", "你 好", False), teacher_row("b", "好的好的", True)]
    out = list(FormBatches(config).process((0, [pack_chunk(rows[:2]), pack_chunk(rows[2:])])))
    batches = [pickle.loads(pickle.dumps(batch)) for _, batch in out]
    assert all(isinstance(b, RowBatch) for b in batches) and len(batches) >= 2
    assert sum(len(b) for b in batches) == 2  # the two rows of one normalised text meet: one is kept
    assert dict(batches[0].counts) == {"duplicates": 1, "teacher_batches": len(batches), "teacher_truncated": 0}
    assert all(b.counts == () for b in batches[1:])


def test_a_variant_that_takes_an_input_rows_id_gives_way_to_it():
    """An input that already holds variants (`zhkd augment` output) augmented again with another seed can
    generate a variant under the id of an input row; the shard keeps the input's row once, and the count
    says how many went."""
    from zhkd.pipelines.build_pipeline import unique_ids

    def row(row_id, text, original, ops=()):
        return {"id": row_id, "text": text, "text_pair": None, "is_original": original, "ops": list(ops)}

    given = row("s~1", "服务很好", True, ["synonym"])
    rows = [row("s~1", "服务挺好", False, ["synonym"]), given, row("t", "房间小", True), row("u~2", "乙", False),
            row("u~2", "甲", False)]
    kept, dropped = unique_ids(rows)
    assert dropped == 2 and sorted(r["id"] for r in kept) == ["s~1", "t", "u~2"]
    assert given in kept and {r["text"] for r in kept if r["id"] == "u~2"} == {"乙"}  # by content: 乙 (U+4E59) first
    by_id = lambda found: sorted(found, key=lambda r: r["id"])  # noqa: E731
    assert by_id(unique_ids(rows[::-1])[0]) == by_id(kept)  # the arrival order does not decide
