"""Shard reader throughput and memory: zhkd's reader vs datasets' streaming read with a shuffle buffer.

Writes N synthetic classification rows (default 1M; Chinese text, 16-128 teacher input ids, 2 logits)
in the shard format, then reads one shuffled epoch into collated, padded batches of 256 with each
contender, each in its own process so its peak RSS (VmHWM) is its own:

- zhkd: `ShardReader` (validated, checksums included in the wall time) + `BatchLoader` + `Collator`
  with the stored ids; only the columns training needs are read. Its shuffle: blocks of 8,192 rows in a
  seeded order, the rows of each block in a seeded order.
- datasets: `load_from_disk(DIR).select_columns(...).to_iterable_dataset(num_shards=shards)
  .shuffle(seed=0, buffer_size=8192).with_format("arrow").iter(batch_size=256)`, datasets' documented
  fast path for an epoch of a local dataset: Arrow batches, shards in a shuffled order through a
  shuffle buffer of the same 8,192 rows, each batch collated by the same `Collator` as zhkd's.
- with --full-shuffle, also the map-style read a user first writes: `with_format("torch")` + a torch
  `DataLoader(shuffle=True)` (a full uniform shuffle, a stronger one, with per-row formatting).

The contenders alternate over --rounds epochs (zhkd, datasets, datasets, zhkd, ...), each in a fresh
process, and must deliver the same rows and tokens. Targets (issue 5): zhkd >= 5x the rows/s of the
datasets read with the same shuffle buffer, and zhkd's RSS < 500 MB at 1M rows. For scale, the RSS of
a process that only imports what the zhkd contender imports (torch, pyarrow) is measured too, and
zhkd's reader runs again on a dataset a tenth the size: flat memory means about the same peak at both
sizes. Results go to bench/results/reader_bench.json.

    python bench/reader_bench.py [--rows 1000000] [--shards 16] [--rounds 3] [--full-shuffle] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from benchlib import RESULTS, interleave, meta, rate_ratio, summary_row, write_result  # noqa: E402

BATCH = 256
SHUFFLE_ROWS = 8192   # zhkd's block, and the peer's shuffle buffer
COLUMNS = ["input_ids", "label", "teacher_logits"]
LABELS = ["negative", "positive"]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _shard_table(indices, schema, rng):
    """Rows with the given global indices, built column-wise with numpy (Python objects only for ids)."""
    import numpy as np
    import pyarrow as pa

    n = len(indices)
    lengths = rng.integers(16, 129, n).astype(np.int32)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    ids = rng.integers(5, 8000, int(offsets[-1]), dtype=np.int32)
    ids[offsets[:-1]] = 2  # [CLS]
    ids[offsets[1:] - 1] = 3  # [SEP]
    input_ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
    # Text: CJK characters (3 UTF-8 bytes each), two fewer than the ids.
    chars = lengths - 2
    codepoints = rng.integers(0x4E00, 0x9FA6, int(chars.sum()), dtype=np.uint32)
    utf8 = np.stack([0xE0 | (codepoints >> 12), 0x80 | ((codepoints >> 6) & 0x3F), 0x80 | (codepoints & 0x3F)],
                    axis=1).astype(np.uint8).reshape(-1)
    text_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(chars * 3, out=text_offsets[1:])
    text = pa.StringArray.from_buffers(n, pa.py_buffer(text_offsets.tobytes()), pa.py_buffer(utf8.tobytes()))
    logits = rng.normal(0, 2, (n, 2)).astype(np.float32).reshape(-1)
    teacher_logits = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), pa.array(logits))
    row_ids = pa.array([f"row-{i:08d}" for i in indices])
    columns = {
        "id": row_ids, "source_id": row_ids, "text": text, "text_pair": pa.nulls(n, pa.string()),
        "label": pa.array(rng.integers(0, 2, n).astype(np.int32)),
        "is_original": pa.array(np.ones(n, dtype=bool)),
        "ops": pa.array([[] for _ in range(n)], type=pa.list_(pa.string())),
        "input_ids": input_ids, "teacher_logits": teacher_logits,
    }
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)


def write_dataset(out_dir: Path, rows: int, shards: int) -> None:
    """N rows in the shard format: rows of a shard by hash(id), sorted by id, manifest, COMPLETED."""
    import numpy as np
    import pyarrow as pa

    from zhkd.shards import ShardInfo, file_sha256, finalize, schema_for, shard_name, shard_of

    schema = schema_for("classification", label_names=LABELS)
    buckets: list[list[int]] = [[] for _ in range(shards)]
    for i in range(rows):
        buckets[shard_of(f"row-{i:08d}", shards)].append(i)  # ids are zero-padded, so index order is id order
    infos = []
    for k, indices in enumerate(buckets):
        table = _shard_table(indices, schema, np.random.default_rng(k))
        path = out_dir / shard_name(k, shards)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(table, max_chunksize=1000)
        infos.append(ShardInfo(path.name, table.num_rows, path.stat().st_size, file_sha256(path)))
    finalize(out_dir, schema, infos, {"config_hash": "reader-bench", "tokenizer_sha256": ""})


class _Pad:
    pad_token_id = 0
    sep_token_id = 3


def run_zhkd(data: Path) -> dict:
    from zhkd.distill.collate import Collator
    from zhkd.distill.loader import BatchLoader
    from zhkd.distill.reader import ShardReader

    start = time.perf_counter()
    reader = ShardReader(data, seed=0, columns=COLUMNS, block_rows=SHUFFLE_ROWS)
    validated = time.perf_counter()
    rows = tokens = 0
    for batch in BatchLoader(reader, BATCH, Collator("classification", _Pad(), stored_ids=True, token_types=False)):
        rows += batch["num_rows"]
        tokens += int(batch["attention_mask"].sum())
    end = time.perf_counter()
    return {"rows": rows, "tokens": tokens, "validate_s": validated - start, "read_s": end - validated,
            "wall_s": end - start}


def run_datasets(data: Path) -> dict:
    """datasets' streaming read of the local dataset with a shuffle buffer of zhkd's block size."""
    import datasets

    from zhkd.distill.collate import Collator

    collate = Collator("classification", _Pad(), stored_ids=True, token_types=False)
    start = time.perf_counter()
    dataset = datasets.load_from_disk(str(data)).select_columns(COLUMNS)
    shards = len(list(data.glob("*.arrow")))
    stream = (dataset.to_iterable_dataset(num_shards=shards).shuffle(seed=0, buffer_size=SHUFFLE_ROWS)
              .with_format("arrow"))
    loaded = time.perf_counter()
    rows = tokens = 0
    for table in stream.iter(batch_size=BATCH):
        batch = collate(table)
        rows += batch["num_rows"]
        tokens += int(batch["attention_mask"].sum())
    end = time.perf_counter()
    return {"rows": rows, "tokens": tokens, "validate_s": loaded - start, "read_s": end - loaded,
            "wall_s": end - start}


def run_datasets_full(data: Path) -> dict:
    """The map-style read: a full uniform shuffle, rows formatted one by one, a torch DataLoader."""
    import datasets
    import torch
    from torch.nn.utils.rnn import pad_sequence
    from torch.utils.data import DataLoader, default_collate

    def collate(items):
        ids = pad_sequence([item.pop("input_ids") for item in items], batch_first=True, padding_value=0)
        batch = default_collate(items)
        batch["input_ids"], batch["attention_mask"] = ids, (ids != 0).long()
        return batch

    start = time.perf_counter()
    dataset = datasets.load_from_disk(str(data)).with_format("torch", columns=COLUMNS)
    loaded = time.perf_counter()
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    rows = tokens = 0
    for batch in loader:
        rows += len(batch["label"])
        tokens += int(batch["attention_mask"].sum())
    end = time.perf_counter()
    return {"rows": rows, "tokens": tokens, "validate_s": loaded - start, "read_s": end - loaded,
            "wall_s": end - start}


def run_imports(data: Path) -> dict:
    """What the zhkd contender imports (torch, pyarrow, the reader), and nothing read: the floor of its RSS."""
    import zhkd.distill.collate  # noqa: F401
    import zhkd.distill.loader  # noqa: F401

    return {}


CONTENDERS = {"zhkd": run_zhkd, "datasets": run_datasets, "datasets_full_shuffle": run_datasets_full,
              "imports": run_imports}


def contender(name: str, data: Path) -> dict:
    """Run one contender in a fresh process; its figures and its own peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--contender", name, "--work", str(data)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="epochs per contender, interleaved")
    parser.add_argument("--full-shuffle", action="store_true", help="also the map-style DataLoader read")
    parser.add_argument("--work", type=Path, help="where the synthetic dataset goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic dataset")
    parser.add_argument("--out", type=Path, default=RESULTS / "reader_bench.json")
    parser.add_argument("--contender", choices=tuple(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.contender:
        # pyarrow imports pandas on its first numpy conversion, datasets on import: loaded here, before
        # either clock starts, one-time loading stays out of both timings.
        import pandas  # noqa: F401
        import torch

        torch.set_num_threads(1)
        figures = CONTENDERS[args.contender](args.work)
        print(json.dumps({**figures, "peak_rss_mb": peak_rss_mb()}))
        return 0

    started, load_before = time.time(), os.getloadavg()
    work = args.work or Path(tempfile.mkdtemp(prefix="zhkd-reader-bench-"))
    data, small = work / "data", work / "tenth"
    for directory, rows in ((data, args.rows), (small, args.rows // 10)):
        if not (directory / "COMPLETED").exists():
            directory.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            write_dataset(directory, rows, args.shards)
            print(f"wrote {rows:,} rows in {args.shards} shards in {time.perf_counter() - start:.1f}s",
                  file=sys.stderr)
    imports_rss = contender("imports", data)["peak_rss_mb"]
    tenth = contender("zhkd", small)
    size_mb = sum(f.stat().st_size for f in data.glob("*.arrow")) / 2**20
    names = ["zhkd", "datasets"] + (["datasets_full_shuffle"] if args.full_shuffle else [])

    def run(name):
        def one_round(r: int) -> dict:
            figures = contender(name, data)
            print(f"round {r} {name:22s} {figures['rows']:,} rows {figures['wall_s']:7.1f}s wall "
                  f"({figures['validate_s']:.1f}s open/validate), peak RSS {figures['peak_rss_mb']:,.0f} MB",
                  file=sys.stderr, flush=True)
            return figures
        return one_round

    timed = interleave(args.rounds, {name: run(name) for name in names})
    for rounds in timed.values():
        for r in rounds:   # the contender's own timing (validation + epoch), not the process start-up
            r["seconds"] = r["wall_s"]
    failed = [f"{name} read {r['rows']:,} rows and {r['tokens']:,} tokens, zhkd {timed['zhkd'][0]['rows']:,} "
              f"and {timed['zhkd'][0]['tokens']:,}" for name in names for r in timed[name]
              if (r["rows"], r["tokens"]) != (args.rows, timed["zhkd"][0]["tokens"])]
    results = {name: {"rows": sum(r["rows"] for r in rounds), "seconds": sum(r["wall_s"] for r in rounds),
                      "rows_per_s": sum(r["rows"] for r in rounds) / sum(r["wall_s"] for r in rounds),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds), "rounds": rounds}
               for name, rounds in timed.items()}
    speed = rate_ratio(timed["zhkd"], timed["datasets"], "rows")
    rss = results["zhkd"]["peak_rss_mb"]
    summary = [
        summary_row("read one shuffled epoch: zhkd ShardReader vs datasets stream, shuffle buffer 8,192",
                    f"{results['zhkd']['rows_per_s']:,.0f} rows/s", f"{results['datasets']['rows_per_s']:,.0f} rows/s",
                    "rows/s", speed["ratio"], interval=speed["round_ratio_interval"], target=5.0,
                    note=(f"{args.rows:,} rows, {args.shards} shards, batches of {BATCH}, same collation; peak RSS "
                          f"{rss:,.0f} MB vs {results['datasets']['peak_rss_mb']:,.0f} MB (zhkd target < 500 MB); "
                          f"imports alone {imports_rss:,.0f} MB")),
        summary_row("zhkd ShardReader peak RSS at 1/10 vs full size", f"{tenth['peak_rss_mb']:,.0f} MB",
                    f"{rss:,.0f} MB", "MB", tenth["peak_rss_mb"] / rss,
                    note="flat memory: about 1.0 (ratio of the smaller dataset's peak to the full one's)"),
    ]
    if args.full_shuffle:
        full = rate_ratio(timed["zhkd"], timed["datasets_full_shuffle"], "rows")
        summary.append(summary_row(
            "read one shuffled epoch: zhkd vs datasets map-style + DataLoader (full uniform shuffle)",
            f"{results['zhkd']['rows_per_s']:,.0f} rows/s",
            f"{results['datasets_full_shuffle']['rows_per_s']:,.0f} rows/s", "rows/s", full["ratio"],
            interval=full["round_ratio_interval"], note="the peer shuffles more thoroughly: not like for like"))
    report = {
        "rows": args.rows, "shards": args.shards, "batch_size": BATCH, "shuffle_rows": SHUFFLE_ROWS,
        "dataset_mb": round(size_mb, 1), "contenders": results, "imports_only_peak_rss_mb": imports_rss,
        "zhkd_at_a_tenth": {"rows": tenth["rows"], "peak_rss_mb": tenth["peak_rss_mb"]},
        "speedup_rows_per_s": speed, "targets": {"speedup": 5.0, "zhkd_peak_rss_mb": 500},
        "met": {"speedup": speed["ratio"] >= 5.0, "zhkd_peak_rss_mb": rss < 500}, "failed": failed or None,
        "summary": summary,
    }
    report["meta"] = meta("reader_bench", started, load_before)
    write_result(args.out, report)
    print(f"zhkd vs datasets stream (buffer {SHUFFLE_ROWS}): {speed['ratio']:.1f}x rows/s (target >= 5x); "
          f"peak RSS {rss:.0f} MB vs {results['datasets']['peak_rss_mb']:.0f} MB (target < 500 MB); "
          f"imports alone {imports_rss:.0f} MB; zhkd at {tenth['rows']:,} rows {tenth['peak_rss_mb']:.0f} MB",
          file=sys.stderr)
    if not args.keep and args.work is None:
        shutil.rmtree(work)
    if failed:
        print("reader_bench FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
