"""The shard reader: validation before training, seeded order, exact mid-epoch resume, ranks, workers."""

from __future__ import annotations

import json
from itertools import islice

import pytest
import torch
from distill_support import write_dataset

from zhkd.distill.collate import Collator
from zhkd.distill.loader import BatchLoader, RowSource
from zhkd.distill.reader import ShardReader
from zhkd.shards import DatasetError

LABELS = ["negative", "positive"]


def synthetic_rows(n: int) -> list[dict]:
    return [{"id": f"row-{i:05d}", "source_id": f"src-{i // 3}", "text": "好" * (1 + i % 7), "text_pair": None,
             "label": i % 2 if i % 5 else None, "is_original": i % 3 == 0, "ops": [] if i % 3 == 0 else ["synonym"],
             "input_ids": [2, *range(5, 5 + i % 9), 3], "teacher_logits": [float(i), -float(i)]} for i in range(n)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("shards") / "data", "classification", synthetic_rows(203), LABELS,
                         num_shards=4)


def epoch_ids(reader: ShardReader) -> list[str]:
    return [row["id"] for row in reader]


def test_every_row_once_per_epoch_and_seeded_order(dataset):
    reader = ShardReader(dataset, seed=7)
    first, second = epoch_ids(reader), epoch_ids(reader)
    expected = sorted(r["id"] for r in synthetic_rows(203))
    assert sorted(first) == expected and sorted(second) == expected
    assert first != second  # each epoch has its own order
    again = ShardReader(dataset, seed=7)
    assert epoch_ids(again) == first and epoch_ids(again) == second
    assert epoch_ids(ShardReader(dataset, seed=8)) != first
    assert epoch_ids(ShardReader(dataset, shuffle=False)) == [
        r["id"] for shard in sorted(json.loads((dataset / "manifest.json").read_text())["shards"],
                                    key=lambda s: s["file"])
        for r in _shard_rows(dataset / shard["file"])]


def _shard_rows(path):
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all().to_pylist()


def test_load_state_dict_mid_epoch_resumes_exactly(dataset):
    uninterrupted = ShardReader(dataset, seed=3)
    expected = epoch_ids(uninterrupted) + epoch_ids(uninterrupted)[:50]
    reader = ShardReader(dataset, seed=3)
    seen = [row["id"] for row in islice(reader, 77)]
    state = json.loads(json.dumps(reader.state_dict()))  # it survives JSON, as the checkpoint stores it
    resumed = ShardReader(dataset, seed=3)
    resumed.load_state_dict(state)
    seen += epoch_ids(resumed) + epoch_ids(resumed)[:50]
    assert seen == expected
    with pytest.raises(Exception, match="seed"):
        ShardReader(dataset, seed=4).load_state_dict(state)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_see_disjoint_rows_that_cover_the_epoch(dataset, world):
    per_rank = [epoch_ids(ShardReader(dataset, seed=1, rank=r, world_size=world)) for r in range(world)]
    flat = [i for ids in per_rank for i in ids]
    assert len(flat) == len(set(flat)) == 203
    # The ranks interleave the single-process order: rank r takes its positions r, r+W, ...
    single = epoch_ids(ShardReader(dataset, seed=1))
    for r, ids in enumerate(per_rank):
        assert ids == single[r::world]


def test_batch_steps_agree_across_ranks_and_workers(dataset):
    collate = Collator("classification", tokenizer=_PadOnly(), stored_ids=True, token_types=False)

    def batches(rank, world, workers):
        reader = ShardReader(dataset, seed=5, rank=rank, world_size=world)
        loader = BatchLoader(reader, 16, collate, num_workers=workers)
        return [b["input_ids"].tolist() if b["num_rows"] else None for b in loader], len(loader), reader

    serial, steps, reader = batches(0, 1, 0)
    assert steps == len(serial) == 13 and reader.epoch == 1 and reader.consumed == 0
    parallel, _, _ = batches(0, 1, 2)
    assert parallel == serial  # two workers, same batches, same order
    # Two ranks: the same number of steps, and rank 1 gets no rows in the last (203 = 6*32 + 11 rows).
    r0, s0, _ = batches(0, 2, 0)
    r1, s1, _ = batches(1, 2, 0)
    assert s0 == s1 == len(r0) == len(r1) == 7
    assert r1[-1] is not None  # 11 rows in the last step: rank 0 takes 6, rank 1 takes 5


def test_batch_loader_state_resumes_at_the_next_batch(dataset):
    collate = Collator("classification", tokenizer=_PadOnly(), stored_ids=True, token_types=False)
    full = [b["teacher_logits"] for b in BatchLoader(ShardReader(dataset, seed=2), 10, collate)]
    reader = ShardReader(dataset, seed=2)
    loader = BatchLoader(reader, 10, collate)
    taken = [b["teacher_logits"] for b in islice(loader, 6)]
    resumed = ShardReader(dataset, seed=2)
    resumed.load_state_dict(reader.state_dict())
    taken += [b["teacher_logits"] for b in BatchLoader(resumed, 10, collate)]
    assert len(taken) == len(full) and all(torch.equal(a, b) for a, b in zip(taken, full, strict=True))


class _WithPid:
    """A collate that says which process collated the batch."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, rows):
        import os

        return {**self.collate(rows), "pid": os.getpid()}


def test_one_stream_crosses_epochs_with_the_same_workers_and_resumes(dataset):
    collate = Collator("classification", tokenizer=_PadOnly(), stored_ids=True, token_types=False)
    serial_reader = ShardReader(dataset, seed=4)
    per_epoch = len(BatchLoader(serial_reader, 16, collate))
    serial = [b["input_ids"] for b in BatchLoader(serial_reader, 16, collate)]
    serial += [b["input_ids"] for b in BatchLoader(serial_reader, 16, collate)]
    serial += [b["input_ids"] for b in islice(BatchLoader(serial_reader, 16, collate), 5)]
    reader = ShardReader(dataset, seed=4)
    loader = BatchLoader(reader, 16, _WithPid(collate), num_workers=2)
    epoch_ends, batches = [], []
    for batch in loader.stream(2 * per_epoch + 5):
        batches.append(batch)
        epoch_ends.append(reader.consumed == 0)
    assert len(batches) == len(serial) and all(torch.equal(a["input_ids"], b) for a, b in zip(batches, serial,
                                                                                                  strict=True))
    # Two worker processes collated all 2.4 epochs: started once, not once per epoch.
    assert len({b["pid"] for b in batches}) == 2
    assert [i for i, end in enumerate(epoch_ends) if end] == [per_epoch - 1, 2 * per_epoch - 1]
    assert (reader.epoch, reader.consumed) == (serial_reader.epoch, serial_reader.consumed) == (2, 5 * 16)
    # A stream started from the saved position goes on with the next batch.
    resumed = ShardReader(dataset, seed=4)
    resumed.load_state_dict(reader.state_dict())
    assert torch.equal(next(iter(BatchLoader(resumed, 16, collate).stream(1)))["input_ids"],
                       next(iter(BatchLoader(serial_reader, 16, collate)))["input_ids"])


def test_row_source_has_the_same_order_semantics():
    rows = [{"id": i} for i in range(50)]
    ids = [[r["id"] for r in RowSource(rows, seed=9, rank=k, world_size=2).batch(0, 0, 100)] for k in range(2)]
    assert sorted(ids[0] + ids[1]) == list(range(50)) and not set(ids[0]) & set(ids[1])


def _steps(items: list, size: int) -> list[list]:
    return [items[s:s + size] for s in range(0, len(items), size)]


def test_group_by_length_cuts_padding_and_keeps_every_row(tmp_path):
    rows = synthetic_rows(600)
    for i, row in enumerate(rows):
        row["input_ids"] = [2, *range(5, 5 + (i * 37) % 61), 3]
    data = write_dataset(tmp_path / "d", "classification", rows, LABELS, num_shards=1)
    lengths = {r["id"]: len(r["input_ids"]) for r in rows}

    def padded_pieces(ids: list[str]) -> int:  # what the collator pads a step of 16 rows to, summed
        return sum(max(lengths[i] for i in step) * len(step) for step in _steps(ids, 16))

    plain = epoch_ids(ShardReader(data, seed=1))
    grouped = epoch_ids(ShardReader(data, seed=1, group_rows=16))
    assert sorted(grouped) == sorted(plain) and len(grouped) == 600
    assert padded_pieces(grouped) < 0.6 * padded_pieces(plain)
    assert epoch_ids(ShardReader(data, seed=1, group_rows=16)) == grouped  # a pure function of the seed
    longest = [max(lengths[i] for i in step) for step in _steps(grouped, 16)]
    assert longest != sorted(longest, reverse=True)  # the steps are shuffled, not served longest first
    assert epoch_ids(ShardReader(data, seed=1, shuffle=False, group_rows=16)) == epoch_ids(
        ShardReader(data, seed=1, shuffle=False))  # no shuffle, no regrouping


def test_group_by_length_resumes_and_refuses_another_grouping(dataset):
    uninterrupted = ShardReader(dataset, seed=3, group_rows=8)
    expected = epoch_ids(uninterrupted)
    reader = ShardReader(dataset, seed=3, group_rows=8)
    seen = [row["id"] for row in islice(reader, 40)]
    resumed = ShardReader(dataset, seed=3, group_rows=8)
    resumed.load_state_dict(json.loads(json.dumps(reader.state_dict())))
    assert seen + epoch_ids(resumed) == expected
    with pytest.raises(Exception, match="group_rows"):
        ShardReader(dataset, seed=3).load_state_dict(reader.state_dict())
    older = {k: v for k, v in ShardReader(dataset, seed=3).state_dict().items() if k != "group_rows"}
    with pytest.raises(Exception, match="saved group_rows is 0, this run has 8"):
        ShardReader(dataset, seed=3, group_rows=8).load_state_dict(older)


def test_grouping_by_text_length_when_the_ids_are_not_read(dataset):
    columns = ["text", "text_pair", "label", "teacher_logits"]
    reader = ShardReader(dataset, seed=4, columns=columns, group_rows=8)
    rows = list(reader)
    assert sorted(r["text"] for r in rows) == sorted(r["text"] for r in synthetic_rows(203))
    by_text = ShardReader(dataset, seed=4, columns=columns, group_rows=8)
    assert [len(r["text"]) for r in by_text] == [len(r["text"]) for r in rows]

    def padded_characters(rows: list[dict]) -> int:
        return sum(max(len(r["text"]) for r in step) * len(step) for step in _steps(rows, 8))

    plain = list(ShardReader(dataset, seed=4, columns=columns))
    assert padded_characters(rows) < 0.85 * padded_characters(plain)


def test_row_source_groups_gold_rows_by_length():
    rows = [{"id": i, "text": "好" * (1 + (i * 13) % 40), "text_pair": None} for i in range(160)]
    source = RowSource(rows, seed=2, group_rows=8)
    steps = [source.batch(0, s, 8) for s in range(source.steps_per_epoch(8))]
    assert sorted(r["id"] for step in steps for r in step) == list(range(160))
    spread = [max(len(r["text"]) for r in step) - min(len(r["text"]) for r in step) for step in steps]
    assert max(spread) <= 2  # 160 rows over 40 lengths: a step holds one or two neighbouring lengths


def test_missing_completed_is_refused(tmp_path):
    data = write_dataset(tmp_path / "d", "classification", synthetic_rows(20), LABELS, num_shards=2)
    (data / "COMPLETED").unlink()
    with pytest.raises(DatasetError, match="COMPLETED.*did not finish"):
        ShardReader(data)


def test_corrupted_shard_is_refused_naming_the_file(tmp_path):
    data = write_dataset(tmp_path / "d", "classification", synthetic_rows(20), LABELS, num_shards=2)
    shard = data / "data-00001-of-00002.arrow"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"data-00001-of-00002\.arrow: sha256 differs"):
        ShardReader(data)


def test_unknown_column_is_refused(dataset):
    with pytest.raises(DatasetError, match="no column tokens"):
        ShardReader(dataset, columns=["tokens"])


class _PadOnly:
    """The collator needs only the pad and [SEP] ids when the rows carry their input ids."""

    pad_token_id = 0
    sep_token_id = 3
