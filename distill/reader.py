"""The trainer's side of the shard format: a seeded, resumable epoch order over a validated dataset.

The format itself (schema, manifest, COMPLETED, validation) is the core's contract, `zhkd.shards`,
which the build writes through; this module only reads through it. Imports pyarrow only.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from zhkd.distill.errors import DistillError
from zhkd.shards import DatasetError, schema_for, validate

GROUP_WINDOW = 50  # steps sorted by length together: enough to find peers, few enough to stay shuffled


class EpochOrder:
    """A seeded order over rows held in parts (blocks of shards; one list of rows), one rank's share of it,
    and the position in it.

    Each epoch shuffles the order of the parts, then the rows inside each part (seeded by seed, epoch
    and part), so the order is the same on every run and only one part's permutation is held at a time.
    Rank r of W takes the epoch positions r, r+W, r+2W, ...: every row exactly once per epoch over all
    ranks. A batch step s covers positions [s*B*W, (s+1)*B*W) on all ranks together, so the ranks agree
    on the step count; the last step may give a rank fewer rows, or none.

    With `group_rows` (a step's rows on all ranks), the shuffled order of each part is regrouped so that
    a step's rows have similar lengths: every window of GROUP_WINDOW steps is sorted by length, cut into
    steps, and the steps are shuffled within the window. Padding, most of a step's cost on CPU, shrinks;
    each row is still seen once per epoch, and the order is still a pure function of (seed, epoch).

    `epoch` and `consumed` (rows of this rank's share already taken this epoch) are the resumable state.
    """

    def __init__(self, part_sizes: list[int], *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, group_rows: int = 0):
        if not 0 <= rank < world_size:
            raise DistillError(f"rank {rank} is outside a world of {world_size}")
        self.part_sizes = list(part_sizes)
        self.num_rows = sum(self.part_sizes)
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.group_rows = group_rows if shuffle else 0
        self.epoch = 0
        self.consumed = 0
        self._permutation: tuple[int, int, object] | None = None  # (epoch, part, rows in shuffled order)
        self._layout: tuple[int, list[int], object] | None = None  # (epoch, part order, cumulative ends)

    @property
    def rows_per_epoch(self) -> int:
        """Rows this rank sees in one epoch."""
        return len(range(self.rank, self.num_rows, self.world_size))

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batch steps in one epoch, the same on every rank."""
        return -(-self.num_rows // (batch_size * self.world_size))

    def part_order(self, epoch: int) -> list[int]:
        import random

        order = list(range(len(self.part_sizes)))
        if self.shuffle:
            random.Random(f"zhkd-parts:{self.seed}:{epoch}").shuffle(order)
        return order

    def _rows_of_part(self, epoch: int, part: int):
        import numpy as np

        if self._permutation is None or self._permutation[:2] != (epoch, part):
            size = self.part_sizes[part]
            rows = (np.random.default_rng([self.seed, epoch, part]).permutation(size) if self.shuffle
                    else np.arange(size))
            if self.group_rows:
                rows = self._grouped(rows, self.part_lengths(part), np.random.default_rng([self.seed, epoch, part, 1]))
            self._permutation = (epoch, part, rows)
        return self._permutation[2]

    def _grouped(self, rows, lengths, rng):
        import numpy as np

        window, step = self.group_rows * GROUP_WINDOW, self.group_rows
        out = []
        for start in range(0, len(rows), window):
            chunk = rows[start:start + window]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            full = len(chunk) // step * step  # a part's last, short step stays last
            steps = chunk[:full].reshape(-1, step)[rng.permutation(full // step)]
            out += [steps.reshape(-1), chunk[full:]]
        return np.concatenate(out) if out else rows

    def part_lengths(self, part: int):
        """Lengths of a part's rows (any unit that orders them like their piece counts); needed by group_rows."""
        raise NotImplementedError(f"{type(self).__name__} cannot group rows by length")

    def locate(self, epoch: int, start: int, stop: int) -> list[tuple[int, object]]:
        """This rank's rows [start, stop) of an epoch as (part, row indices) runs, in order."""
        import numpy as np

        positions = np.arange(start, min(stop, self.rows_per_epoch), dtype=np.int64) * self.world_size + self.rank
        if self._layout is None or self._layout[0] != epoch:
            order = self.part_order(epoch)
            self._layout = (epoch, order, np.cumsum([self.part_sizes[p] for p in order]))
        _, order, ends = self._layout
        slots = np.searchsorted(ends, positions, side="right")
        runs = []
        for slot in np.unique(slots):
            within = positions[slots == slot] - (ends[slot] - self.part_sizes[order[slot]])
            part = order[int(slot)]
            runs.append((part, self._rows_of_part(epoch, part)[within]))
        return runs

    def step_range(self, step: int, batch_size: int) -> tuple[int, int]:
        """This rank's rows of batch step `step`: [step*B, (step+1)*B) of its share, clipped."""
        return min(step * batch_size, self.rows_per_epoch), min((step + 1) * batch_size, self.rows_per_epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "shuffle": self.shuffle,
                "rank": self.rank, "world_size": self.world_size, "num_rows": self.num_rows,
                "group_rows": self.group_rows}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "shuffle", "world_size", "num_rows", "group_rows"):
            saved = state.get(key, 0)  # checkpoints from before grouping existed have no group_rows
            if saved != getattr(self, key):
                raise DistillError(f"cannot resume: the saved {key} is {saved!r}, this run has {getattr(self, key)!r}")
        if not 0 <= state["consumed"] <= self.rows_per_epoch:
            raise DistillError(f"cannot resume: {state['consumed']} rows consumed of an epoch of {self.rows_per_epoch}")
        self.epoch, self.consumed = state["epoch"], state["consumed"]


class ShardReader(EpochOrder):
    """A validated soft-label dataset, read from memory-mapped Arrow streams in a seeded block shuffle.

    The directory is validated first (COMPLETED, manifest, checksums, schema). Each shard is cut into
    blocks of `block_rows` consecutive rows; an epoch visits the blocks of all shards in a shuffled
    order and the rows of each block in a shuffled order. Rows inside a shard are sorted by their
    hashed id, so a block is already a random sample of its shard. Only the current block's columns
    are copied out of the memory map (two blocks and two shard maps at most), so memory stays flat
    however large the dataset. Iterating yields row dicts from the saved position to the end of the
    epoch, then moves to the next epoch. Picklable for DataLoader workers (maps are reopened there).
    """

    def __init__(self, path: str | Path, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, columns: list[str] | None = None, check_checksums: bool = True,
                 block_rows: int = 8192, group_rows: int = 0):
        self.path = Path(path)
        self.manifest = validate(self.path, check_checksums=check_checksums)
        self.task: str = self.manifest["task"]
        self.label_names: list[str] = self.manifest["label_names"]
        self.files = [s["file"] for s in self.manifest["shards"]]
        full = schema_for(self.task, label_names=self.label_names)
        unknown = sorted(set(columns or ()) - set(full.names))
        if unknown:
            raise DatasetError(f"{self.path}: no column {', '.join(unknown)} in a {self.task} dataset")
        self.columns = list(columns) if columns else full.names
        self.schema = pa.schema([full.field(name) for name in self.columns])
        sizes = [s["rows"] for s in self.manifest["shards"]]
        self.blocks = [(shard, start) for shard, rows in enumerate(sizes) for start in range(0, rows, block_rows)]
        self._maps: dict[int, pa.Table] = {}  # shard -> its zero-copy table over the memory map
        self._block_tables: dict[int, pa.Table] = {}  # block -> its rows, copied out of the map
        super().__init__([min(block_rows, sizes[shard] - start) for shard, start in self.blocks], seed=seed,
                         shuffle=shuffle, rank=rank, world_size=world_size, group_rows=group_rows)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}, "_block_tables": {}, "_permutation": None, "_layout": None}

    @staticmethod
    def _remember(cache: dict, key: int, value):
        if len(cache) >= 2:
            cache.pop(next(iter(cache)))
        cache[key] = value
        return value

    def _block(self, part: int) -> pa.Table:
        if part in self._block_tables:
            return self._block_tables[part]
        shard, start = self.blocks[part]
        if shard not in self._maps:
            with pa.memory_map(str(self.path / self.files[shard])) as source:
                self._remember(self._maps, shard, pa.ipc.open_stream(source).read_all().select(self.columns))
        # One contiguous copy of the block: a take over a chunked table would copy the whole shard per call.
        block = self._maps[shard].slice(start, self.part_sizes[part]).combine_chunks()
        return self._remember(self._block_tables, part, block)

    def part_lengths(self, part: int):
        """Pieces per row from the stored ids; characters when the reader reads text instead."""
        import pyarrow.compute as pc

        block = self._block(part)
        if "input_ids" in block.column_names:
            return pc.list_value_length(block.column("input_ids")).to_numpy(zero_copy_only=False)
        if "tokens" in block.column_names:
            return pc.list_value_length(block.column("tokens")).to_numpy(zero_copy_only=False)
        lengths = pc.utf8_length(block.column("text")).fill_null(0)
        if "text_pair" in block.column_names:
            lengths = pc.add(lengths, pc.utf8_length(block.column("text_pair")).fill_null(0))
        return lengths.to_numpy(zero_copy_only=False)

    def take(self, epoch: int, start: int, stop: int) -> pa.Table:
        """This rank's rows [start, stop) of an epoch's order, as one Arrow table."""
        tables = [self._block(part).take(pa.array(rows)) for part, rows in self.locate(epoch, start, stop)]
        if not tables:
            return self.schema.empty_table()
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def batch(self, epoch: int, step: int, batch_size: int) -> pa.Table:
        return self.take(epoch, *self.step_range(step, batch_size))

    def __iter__(self):
        chunk = 256
        while self.consumed < self.rows_per_epoch:
            start = self.consumed
            rows = self.take(self.epoch, start, start + chunk).to_pylist()
            for i, row in enumerate(rows):
                self.consumed = start + i + 1
                yield row
        self.epoch, self.consumed = self.epoch + 1, 0
