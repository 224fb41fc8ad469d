"""Shard reader throughput and memory: zhkd's reader vs `datasets.load_from_disk` + a torch DataLoader.

Writes N synthetic classification rows (default 1M; Chinese text, 16-128 teacher input ids, 2 logits)
in the shard format, then reads one shuffled epoch into collated, padded batches of 256 with each
contender, each in its own process so its peak RSS (VmHWM) is its own:

- zhkd: `ShardReader` (validated, checksums included in the wall time) + `BatchLoader` + `Collator`
  with the stored ids; only the columns training needs are read.
- datasets: `datasets.load_from_disk(DIR).with_format("torch", columns=...)` + `DataLoader(shuffle=True,
  batch_size=256)`; its collate pads `input_ids` with `pad_sequence` and hands the fixed-size fields to
  torch's `default_collate` (default_collate alone cannot stack ragged rows).

Targets (issue 5): zhkd >= 5x the rows/s, and zhkd's RSS < 500 MB at 1M rows. For scale, the RSS
of a process that only imports what the zhkd contender imports (torch, pyarrow) is measured too, and
zhkd's reader runs again on a dataset a tenth the size: flat memory means about the same peak at both
sizes. Results go to bench/results/reader_bench.json.

    python bench/reader_bench.py [--rows 1000000] [--shards 16] [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

RESULTS = Path(__file__).parent / "results" / "reader_bench.json"
BATCH = 256
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
    reader = ShardReader(data, seed=0, columns=["input_ids", "label", "teacher_logits"])
    validated = time.perf_counter()
    rows = tokens = 0
    for batch in BatchLoader(reader, BATCH, Collator("classification", _Pad(), stored_ids=True, token_types=False)):
        rows += batch["num_rows"]
        tokens += int(batch["attention_mask"].sum())
    end = time.perf_counter()
    return {"rows": rows, "tokens": tokens, "validate_s": validated - start, "read_s": end - validated,
            "wall_s": end - start}


def run_datasets(data: Path) -> dict:
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
    dataset = datasets.load_from_disk(str(data)).with_format("torch", columns=["input_ids", "label",
                                                                                "teacher_logits"])
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


def contender(name: str, data: Path) -> dict:
    """Run one contender in a fresh process; its figures and its own peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--contender", name, "--work", str(data)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--work", type=Path, help="where the synthetic dataset goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic dataset")
    parser.add_argument("--contender", choices=("zhkd", "datasets", "imports"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.contender:
        import torch

        torch.set_num_threads(1)
        run = {"zhkd": run_zhkd, "datasets": run_datasets, "imports": run_imports}[args.contender]
        figures = run(args.work)
        print(json.dumps({**figures, "peak_rss_mb": peak_rss_mb()}))
        return

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
    results = {}
    for name in ("zhkd", "datasets"):
        figures = contender(name, data)
        figures["rows_per_s"] = figures["rows"] / figures["wall_s"]
        results[name] = figures
        print(f"{name:9s} {figures['rows']:,} rows  {figures['wall_s']:7.1f}s wall "
              f"({figures['validate_s']:.1f}s open/validate)  {figures['rows_per_s']:>10,.0f} rows/s  "
              f"peak RSS {figures['peak_rss_mb']:,.0f} MB", file=sys.stderr)
    assert results["zhkd"]["rows"] == results["datasets"]["rows"] == args.rows
    assert results["zhkd"]["tokens"] == results["datasets"]["tokens"]  # the same rows, all of them
    ratio = results["zhkd"]["rows_per_s"] / results["datasets"]["rows_per_s"]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "rows": args.rows, "shards": args.shards, "batch_size": BATCH, "dataset_mb": round(size_mb, 1),
        "contenders": results,
        "imports_only_peak_rss_mb": imports_rss,
        "zhkd_at_a_tenth": {"rows": tenth["rows"], "peak_rss_mb": tenth["peak_rss_mb"]},
        "speedup_rows_per_s": ratio,
        "targets": {"speedup": 5.0, "zhkd_peak_rss_mb": 500},
        "met": {"speedup": ratio >= 5.0, "zhkd_peak_rss_mb": results["zhkd"]["peak_rss_mb"] < 500},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"zhkd vs datasets+DataLoader: {ratio:.1f}x rows/s (target >= 5x); "
          f"peak RSS {results['zhkd']['peak_rss_mb']:.0f} MB vs {results['datasets']['peak_rss_mb']:.0f} MB "
          f"(target < 500 MB); imports alone {imports_rss:.0f} MB; zhkd at {tenth['rows']:,} rows "
          f"{tenth['peak_rss_mb']:.0f} MB")
    if not args.keep and args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
