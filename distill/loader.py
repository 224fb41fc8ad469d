"""Batches for the trainer: one rank's share of each epoch, collated in DataLoader workers, resumable.

A source is an `EpochOrder` that can fetch the rows of a batch step: the `ShardReader` over a
soft-label dataset, or `RowSource` over gold rows held in memory. Worker k of K collates steps
k, k+K, ... of the stream; the DataLoader hands batches back round-robin, so they arrive in step order whatever
the worker count. The source's `consumed` advances only as the trainer receives each batch, so its
`state_dict()` at any step resumes at exactly the next batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch.utils.data

from zhkd.distill.reader import EpochOrder


class RowSource(EpochOrder):
    """Rows held in memory (a gold task file), in the same seeded, rank-partitioned order as shards."""

    def __init__(self, rows: Sequence[dict], *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, group_rows: int = 0):
        super().__init__([len(rows)], seed=seed, shuffle=shuffle, rank=rank, world_size=world_size,
                         group_rows=group_rows)
        self.rows = rows
        self._lengths = None  # computed once, on the first epoch that groups by length

    def part_lengths(self, part: int):
        """Characters (or tokens, for ner) per row."""
        import numpy as np

        if self._lengths is None:
            self._lengths = np.array([len(r["tokens"]) if r.get("tokens") is not None
                                      else len(r.get("text") or "") + len(r.get("text_pair") or "")
                                      for r in self.rows])
        return self._lengths

    def batch(self, epoch: int, step: int, batch_size: int) -> list[dict]:
        runs = self.locate(epoch, *self.step_range(step, batch_size))
        return [self.rows[i] for _, indices in runs for i in indices.tolist()]


class StepBatches(torch.utils.data.IterableDataset):
    """`count` collated batch steps of a source from (epoch, first_step) on, crossing into later epochs;
    worker k of K takes every K-th."""

    def __init__(self, source, collate: Callable, epoch: int, first_step: int, batch_size: int, count: int):
        self.source, self.collate, self.epoch, self.first_step, self.batch_size, self.count = (
            source, collate, epoch, first_step, batch_size, count)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        per_epoch = self.source.steps_per_epoch(self.batch_size)
        for k in range(worker, self.count, workers):
            epoch, step = divmod(self.first_step + k, per_epoch)
            yield self.collate(self.source.batch(self.epoch + epoch, step, self.batch_size))


class BatchLoader:
    """This rank's batches of `source` from its saved position on, epoch after epoch.

    One `stream` is one DataLoader: its workers start once and collate every batch of the stream,
    across epoch boundaries (a stage runs one stream), instead of being started again each epoch. With
    `pin_memory` (training on CUDA) batches arrive in page-locked memory, so the copy to the device can
    overlap with compute (`non_blocking=True`).
    """

    def __init__(self, source, batch_size: int, collate: Callable, *, num_workers: int = 0,
                 pin_memory: bool = False):
        self.source, self.batch_size, self.collate = source, batch_size, collate
        self.num_workers, self.pin_memory = num_workers, pin_memory

    def __len__(self) -> int:
        return self.source.steps_per_epoch(self.batch_size)

    @property
    def next_step(self) -> int:
        """Index in the epoch of the batch the next iteration starts with."""
        return -(-self.source.consumed // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        """The rest of the current epoch."""
        return self.stream(len(self) - self.next_step)

    def stream(self, count: int) -> Iterator[dict]:
        """The next `count` batches. The source's position advances as each batch is handed over, and the
        epoch at the epoch's last batch (then `source.consumed == 0`), so `source.state_dict()` taken
        between two batches resumes at exactly the next one."""
        source, size, per_epoch = self.source, self.batch_size, len(self)
        first = self.next_step
        batches = StepBatches(source, self.collate, source.epoch, first, size, count)
        # A generator of its own: the loader's seed draw must not advance the global RNG (dropout's).
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=self.num_workers,
                                             pin_memory=self.pin_memory, generator=torch.Generator())
        for k, batch in enumerate(loader):
            step = (first + k) % per_epoch
            source.consumed = source.step_range(step, size)[1]
            if step == per_epoch - 1:
                source.epoch, source.consumed = source.epoch + 1, 0
            yield batch
