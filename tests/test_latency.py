"""Timing in alternation: the order of the rounds, equal counts, and what alternation buys under drift.

A fake clock makes every figure exact: these tests check the ordering logic and the statistics, never
how fast this machine is.
"""

from __future__ import annotations

import statistics

import pytest

from zhkd.distill.latency import MIN_RUNS, percentile, round_order, summarise, time_in_rounds


class FakeMachine:
    """A clock that only moves when a model runs: each call costs `cost(name, call_index)` seconds."""

    def __init__(self, cost):
        self.now = 0.0
        self.calls: list[str] = []
        self.cost = cost

    def clock(self) -> float:
        return self.now

    def model(self, name: str):
        def call():
            self.now += self.cost(name, len(self.calls))
            self.calls.append(name)
        return call


def test_each_round_runs_every_model_once_and_the_start_rotates():
    assert round_order(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert round_order(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert round_order(["a", "b", "c"], 5) == ["c", "a", "b"]
    machine = FakeMachine(lambda name, i: 1.0)
    times = time_in_rounds({n: machine.model(n) for n in "abc"}, runs=3, warmup=1, clock=machine.clock)
    assert "".join(machine.calls) == "abc" + "bca" + "cab" + "abc"  # one warm-up round, then three timed
    assert {n: len(t) for n, t in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_each_call_is_credited_to_the_model_that_ran():
    costs = {"fast": 0.001, "slow": 0.004}
    machine = FakeMachine(lambda name, i: costs[name])
    times = time_in_rounds({n: machine.model(n) for n in costs}, runs=4, warmup=0, clock=machine.clock)
    assert times == {"fast": [pytest.approx(0.001)] * 4, "slow": [pytest.approx(0.004)] * 4}


def test_alternation_cancels_a_steady_slow_down_that_back_to_back_timing_blames_on_one_model():
    """Two identical models on a machine that slows by 2% a call: timed one after the other, the second
    looks 1.3x slower; timed in alternation they measure within 3% of each other."""
    def drift(name, i):
        return 0.010 * (1 + 0.02 * i)

    machine = FakeMachine(drift)
    alternated = time_in_rounds({"a": machine.model("a"), "b": machine.model("b")}, runs=20, warmup=0,
                                clock=machine.clock)
    ratio = statistics.median(alternated["b"]) / statistics.median(alternated["a"])
    assert ratio == pytest.approx(1.0, abs=0.03)

    machine = FakeMachine(drift)
    first = time_in_rounds({"a": machine.model("a")}, runs=20, warmup=0, clock=machine.clock)["a"]
    second = time_in_rounds({"b": machine.model("b")}, runs=20, warmup=0, clock=machine.clock)["b"]
    assert statistics.median(second) / statistics.median(first) > 1.3


def test_a_time_budget_stops_every_model_after_the_same_round():
    machine = FakeMachine(lambda name, i: {"a": 1.0, "b": 3.0}[name])
    times = time_in_rounds({"a": machine.model("a"), "b": machine.model("b")}, runs=50, warmup=2,
                           max_seconds=1e-3, clock=machine.clock)
    assert len(times["a"]) == len(times["b"]) == MIN_RUNS  # never fewer, and never unequal
    # 4 s a round, 2 s per model: a budget of 13 s per model (26 s in all) is spent after 7 rounds.
    machine = FakeMachine(lambda name, i: {"a": 1.0, "b": 3.0}[name])
    times = time_in_rounds({"a": machine.model("a"), "b": machine.model("b")}, runs=50, warmup=0,
                           max_seconds=13.0, clock=machine.clock)
    assert len(times["a"]) == len(times["b"]) == 7


def test_the_record_keeps_the_median_and_its_spread():
    times = [t / 1000 for t in range(1, 12)]  # 1 .. 11 ms
    record = summarise(times, device="cpu", dtype="float32", seq_len=8, batch_size=2)
    assert record.p50_ms == pytest.approx(6.0)
    assert (record.p10_ms, record.p25_ms, record.p75_ms, record.p90_ms) == pytest.approx((2.0, 3.5, 8.5, 10.0))
    assert record.p95_ms == pytest.approx(10.5)
    assert record.rows_per_s == pytest.approx(2 / 0.006) and record.runs == 11
    assert percentile([5.0], 90) == 5.0
