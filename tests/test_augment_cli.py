"""`zhkd augment`: fields kept and added, rejected rows with reasons, one-line errors, all three tasks."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_zhkd

from zhkd.commands.augment import rejected_path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_classification_rows_rejects_and_summary(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [
        json.dumps({"id": "a", "text": "酒店的服务很好，房间干净，早餐丰富", "label": "positive", "source": "web"},
                   ensure_ascii=False),
        "{not json",
        json.dumps({"text": "   ", "label": "negative"}),
        json.dumps({"label": "negative"}),
        json.dumps({"text": "价格偏高，但是位置方便，交通便利", "label": 0}, ensure_ascii=False),
        "",
    ])
    out = tmp_path / "out.jsonl"
    result = run_zhkd("augment", "--task", "classification", "--input", src, "--output", out, "--num-aug", "3",
                      "--ops", "synonym,homophone,eda")
    assert result.returncode == 0, result.stderr
    assert "5 rows read, 3 rejected" in result.stderr
    rows = read_jsonl(out)
    originals = [r for r in rows if r["is_original"]]
    assert [r["text"] for r in originals] == ["酒店的服务很好，房间干净，早餐丰富", "价格偏高，但是位置方便，交通便利"]
    assert originals[0]["id"] == "a" and originals[0]["source"] == "web" and originals[0]["ops"] == []
    assert originals[1]["id"].startswith("row-")
    for r in rows:
        assert r["source_id"] in ("a", originals[1]["id"])
        if not r["is_original"]:
            assert r["ops"] and r["ops"][0].split(":")[0] in ("synonym", "homophone", "eda")
            assert r["label"] in ("positive", 0)
    assert 2 < len(rows) <= 8
    rejected = read_jsonl(rejected_path(out))
    assert [r["line"] for r in rejected] == [2, 3, 4]
    assert rejected[0]["reason"] == "malformed_json" and rejected[0]["row"] == "{not json"
    assert [r["reason"] for r in rejected[1:]] == ["empty_text", "missing_field"]
    assert rejected[2]["detail"] == "no field 'text'"


def test_ner_and_pair_tasks(tmp_path):
    src = write_lines(tmp_path / "ner.jsonl", [
        json.dumps({"id": "n1", "tokens": list("江泽民在北京会见了来访的客人"),
                    "tags": ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"] + ["O"] * 8}, ensure_ascii=False),
        json.dumps({"id": "n2", "tokens": ["一", "二"], "tags": ["O"]}),
        json.dumps({"id": "n3", "tokens": ["一", "二"], "tags": ["O", "X-PER"]}),
    ])
    out = tmp_path / "ner.out.jsonl"
    result = run_zhkd("augment", "--task", "ner", "--input", src, "--output", out, "--num-aug", "4")
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(out)
    assert len(rows) >= 3 and all(len(r["tokens"]) == len(r["tags"]) for r in rows)
    assert all("".join(r["tokens"][:3]) in ("江泽民", "江澤民") for r in rows if r["tags"][0] == "B-PER")
    rejected = read_jsonl(tmp_path / "ner.out.rejected.jsonl")
    assert [(r["reason"], r["detail"]) for r in rejected] == [
        ("length_mismatch", "2 tokens but 1 tags"), ("invalid_bio", "tag 'X-PER' is not O, B-X or I-X")]

    pair_src = write_lines(tmp_path / "pair.jsonl", [
        json.dumps({"text": "房间很干净", "text_pair": "卫生条件不错", "label": 1}, ensure_ascii=False),
        json.dumps({"text": "只有一边"}, ensure_ascii=False),
    ])
    pair_out = tmp_path / "pair.out.jsonl"
    result = run_zhkd("augment", "--task", "pair", "--input", pair_src, "--output", pair_out, "--num-aug", "3")
    assert result.returncode == 0, result.stderr
    assert all(r["text_pair"] and r["label"] == 1 for r in read_jsonl(pair_out))
    assert read_jsonl(tmp_path / "pair.out.rejected.jsonl")[0]["detail"] == "no field 'text_pair'"


def test_cannot_run_is_a_one_line_error(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": "好"})])
    for args, message in [
        (["--input", tmp_path / "missing.jsonl"], "missing.jsonl: no such file"),
        (["--input", src, "--ops", "synonym,teleport"], "unknown operator 'teleport'"),
        (["--input", src, "--ops", "mlm"], "needs a masked-LM checkpoint"),
        (["--input", src, "--ops", "wordvec", "--wordvec", tmp_path / "none.txt"], "no such word-vector file"),
    ]:
        result = run_zhkd("augment", "--task", "classification", "--output", tmp_path / "o.jsonl", *args)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
