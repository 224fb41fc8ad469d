"""What crosses the build's shuffles: packed integers and floats, segment ids, chunks, row keys."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from zhkd.augment.example import Variant
from zhkd.pipelines.wire import (
    chunked,
    pack_chunk,
    pack_floats,
    pack_ints,
    pack_segments,
    packed_count,
    row_key,
    unpack_chunk,
    unpack_floats,
    unpack_ints,
)


@pytest.mark.parametrize("values", [[], [0, 1, 255], [-1, 3, 100], [0, 21127, 65535], [-1, 511, 300],
                                    [0, 250_001], [-(2**31), 2**31 - 1]])
def test_packed_integers_come_back_exactly_and_count_themselves(values):
    packed = pack_ints(values)
    assert unpack_ints(packed).tolist() == values and packed_count(packed) == len(values)


def test_integers_pack_into_the_smallest_type_that_holds_them():
    assert len(pack_ints([0, 1, 200] * 10)) == 1 + 30  # uint8
    assert len(pack_ints([0, 21127] * 10)) == 1 + 40  # uint16: a Chinese BERT vocabulary
    assert len(pack_ints([-1, 300] * 10)) == 1 + 40  # int16: NER token starts
    assert len(pack_ints([0, 250_001] * 10)) == 1 + 80  # int32: a multilingual vocabulary
    ids = list(range(100, 21100, 350))
    assert len(pickle.dumps(pack_ints(ids), 5)) < len(pickle.dumps(ids, 5))


def test_integers_beyond_int32_are_refused():
    with pytest.raises(ValueError, match="int32"):
        pack_ints([2**31])


def test_segment_ids_travel_as_nothing_when_there_is_one_segment():
    assert pack_segments(None) is None and pack_segments([0, 0, 0]) == b""
    assert unpack_ints(pack_segments([0, 0, 1, 1])).tolist() == [0, 0, 1, 1]


def test_logits_come_back_as_the_same_float32_values():
    logits = np.array([[0.1, -2.5, 3.0], [1e-8, 0.0, -0.0]], dtype=np.float32)
    assert np.array_equal(unpack_floats(pack_floats(logits), 3), logits)
    assert unpack_floats(pack_floats(logits[0])).tolist() == logits[0].tolist()


def test_chunks_keep_each_keys_values_in_order_and_never_exceed_the_size():
    pairs = [(i % 3, i) for i in range(20)]
    chunks = list(chunked(pairs, size=4))
    assert all(len(values) <= 4 for _, values in chunks)
    for key in range(3):
        assert [v for k, values in chunks if k == key for v in values] == [i for k, i in pairs if k == key]
    assert list(chunked([], size=4)) == []


def test_a_packed_chunk_is_one_bytes_object_that_gives_back_equal_rows():
    rows = [Variant(f"r{i}", "r", "很好" * i, None, i % 2, None, None, ("insert",) * (i % 2), i == 0) for i in range(5)]
    packed = pack_chunk(rows)
    assert type(packed) is bytes
    assert unpack_chunk(packed) == rows and [row_key(r) for r in unpack_chunk(packed)] == [row_key(r) for r in rows]


def test_a_row_key_changes_with_any_field_and_with_nothing_else():
    row = Variant("a~1", "a", "很好", None, 1, None, None, ("synonym",), False)
    assert row_key(row) == row_key(Variant(*row)) and len(row_key(row)) == 16
    for field, other in [("text", "很 好"), ("ops", ("insert",)), ("is_original", True), ("label", 0)]:
        assert row_key(row._replace(**{field: other})) != row_key(row)
