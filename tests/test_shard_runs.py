"""The sink's external sort: shards merged from sorted runs, streamed, the same bytes for any run count."""

from __future__ import annotations

import random

import pytest

from zhkd.pipelines import sink
from zhkd.shards import DatasetError, read_rows, schema_for, shard_name, write_shard, write_sorted_shard

SCHEMA = schema_for("classification", label_names=["negative", "positive"])


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    ids = rng.sample(range(10 * n), n)
    return [{"id": f"{i:08x}", "source_id": f"{i:08x}", "text": f"第{i}条评论", "text_pair": None, "label": i % 2,
             "is_original": i % 3 == 0, "ops": [] if i % 3 == 0 else ["synonym"], "input_ids": [101, i % 7000, 102],
             "teacher_logits": [rng.random(), -rng.random()]} for i in ids]


def merged(tmp_path, data: list[dict], runs: int) -> bytes:
    staging = str(tmp_path / f"staging-{runs}")
    names = [sink.write_run(staging, 0, r, data[r::runs], SCHEMA) for r in range(runs)]
    seen: list[str] = []
    info = sink.merge_runs(staging, 0, 2, names, SCHEMA, on_row=lambda row: seen.append(row["id"]))
    assert info.rows == len(data) == len(seen) and seen == sorted(r["id"] for r in data)
    return (tmp_path / f"staging-{runs}" / shard_name(0, 2)).read_bytes()


def test_a_shard_merged_from_any_number_of_runs_has_the_same_bytes(tmp_path):
    data = rows(2500)  # several record batches of 1,000 rows
    whole = tmp_path / "whole.arrow"
    write_shard(data, whole, SCHEMA)
    assert merged(tmp_path, data, 1) == merged(tmp_path, data, 7) == whole.read_bytes()
    assert [r["id"] for r in read_rows(whole)] == sorted(r["id"] for r in data)
    assert list(read_rows(whole))[0] == min(data, key=lambda r: r["id"]) | {
        "teacher_logits": pytest.approx(min(data, key=lambda r: r["id"])["teacher_logits"])}


def test_a_shard_with_no_runs_is_a_valid_empty_shard(tmp_path):
    info = sink.merge_runs(str(tmp_path), 1, 2, [], SCHEMA)
    assert info.rows == 0 and list(read_rows(tmp_path / shard_name(1, 2))) == []


def test_rows_out_of_order_or_repeated_stop_the_write_and_leave_nothing(tmp_path):
    data = sorted(rows(10), key=lambda r: r["id"])
    for broken in (data[::-1], data[:5] + data[4:]):
        with pytest.raises(DatasetError, match="must come sorted"):
            write_sorted_shard(iter(broken), tmp_path / "bad.arrow", SCHEMA)
        assert list(tmp_path.iterdir()) == []
