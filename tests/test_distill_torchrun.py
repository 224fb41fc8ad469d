"""Data parallel on two CPU processes (gloo) through torchrun: disjoint rows, one decision for all ranks
(`--student auto`), and `zhkd distill` completes (rank 0 alone claims the output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from distill_support import label_with_teacher, read_log, write_subset

WORKER = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from zhkd.distill.collate import Collator
    from zhkd.distill.loader import BatchLoader
    from zhkd.distill.reader import ShardReader
    from zhkd.distill.errors import DistillError
    from zhkd.distill.train import decided_by_rank0, distributed
    from zhkd.cli import main

    data, out, ids_dir = sys.argv[1:4]
    with distributed() as (rank, world, device):
        reader = ShardReader(data, seed=11, rank=rank, world_size=world, columns=["input_ids", "teacher_logits"])
        ids = [row["input_ids"] for row in reader]
        steps = len(BatchLoader(reader, 8, Collator("classification", None, stored_ids=True)))
        # A decision that each rank would make differently (a student timed on each) is rank 0's everywhere,
        # and rank 0's refusal is every rank's.
        decided = decided_by_rank0(lambda: f"chosen on rank {rank}", rank, world)
        def refuse():
            raise DistillError(f"refused on rank {rank}")
        try:
            decided_by_rank0(refuse, rank, world)
            refused = None
        except DistillError as err:
            refused = str(err)
        with open(f"{ids_dir}/rank{rank}.json", "w") as f:
            json.dump({"rows": ids, "steps": steps, "world": world, "decided": decided, "refused": refused}, f)
        code = main(["distill", "--data", data, "--teacher", sys.argv[4], "--student", "mini", "--output", out,
                     "--max-steps", "4", "--batch-size", "8", "--max-length", "48", "--save-every", "2",
                     "--dev", sys.argv[5]])
    sys.exit(code)
""")


def test_two_gloo_ranks_split_the_epoch_and_train(tmp_path, tiny_classifier):
    train = write_subset(tmp_path / "train.jsonl", "chnsenti", "train", 61)
    data = label_with_teacher(tmp_path / "data", "classification", train, tiny_classifier, num_shards=3)
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(data), str(tmp_path / "out"), str(tmp_path), str(tiny_classifier), str(train)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2] and ranks[0]["steps"] == ranks[1]["steps"] == 4
    assert [r["decided"] for r in ranks] == ["chosen on rank 0"] * 2
    assert [r["refused"] for r in ranks] == ["refused on rank 0"] * 2
    # Rows are told apart by their ids' tokenisation; the two shares are disjoint and cover all 61 rows.
    shares = [[tuple(ids) for ids in r["rows"]] for r in ranks]
    assert len(shares[0]) == 31 and len(shares[1]) == 30
    assert len(set(shares[0]) | set(shares[1])) == 61 and not set(shares[0]) & set(shares[1])
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["stages"]["kd"]["steps"] == 4
    events = read_log(out)
    assert any(e["event"] == "checkpoint" and e.get("stage") == "kd" for e in events)
    assert next(e for e in events if e["event"] == "stage_start")["world_size"] == 2
    assert (out / "model.safetensors").exists()
