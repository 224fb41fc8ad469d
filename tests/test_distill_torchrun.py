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
    import zhkd.shards

    data, out, ids_dir = sys.argv[1:4]
    hashed = []
    file_sha256 = zhkd.shards.file_sha256
    zhkd.shards.file_sha256 = lambda path: hashed.append(str(path)) or file_sha256(path)
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
        with open(f"{ids_dir}/hashed-rank{rank}.json", "w") as f:
            json.dump(hashed, f)
    sys.exit(code)
""")


def sentiment_dataset(tmp_path, rows: int, teacher, num_shards: int):
    """The first `rows` reviews of the train split and their soft labels from `teacher`."""
    train = write_subset(tmp_path / "train.jsonl", "chnsenti", "train", rows)
    return train, label_with_teacher(tmp_path / "data", "classification", train, teacher, num_shards=num_shards)


def run_script(tmp_path, source: str, *args, ranks: int = 2, tee: bool = False) -> subprocess.CompletedProcess:
    """`source` as a script, under torchrun with `ranks` gloo processes (0: one plain process)."""
    script = tmp_path / f"script-{ranks}.py"
    script.write_text(source, encoding="utf-8")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                *(["--tee", "2"] if tee else [])] if ranks else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*launcher, str(script), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_two_gloo_ranks_split_the_epoch_and_train(tmp_path, tiny_classifier):
    train, data = sentiment_dataset(tmp_path, 61, tiny_classifier, num_shards=3)
    result = run_script(tmp_path, WORKER, data, tmp_path / "out", tmp_path, tiny_classifier, train)
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
    # `zhkd distill` hashed the 3 shards on rank 0 only (the reader above was told to check them on both).
    hashed = [[p for p in json.loads((tmp_path / f"hashed-rank{r}.json").read_text()) if p.endswith(".arrow")]
              for r in range(2)]
    assert len(hashed[0]) == 3 + 3 and len(hashed[1]) == 3


def test_a_dataset_rank_0_refuses_stops_every_rank_with_one_line(tmp_path, tiny_classifier):
    _, data = sentiment_dataset(tmp_path, 20, tiny_classifier, num_shards=2)
    shard = sorted(data.glob("data-*.arrow"))[0]
    raw = bytearray(shard.read_bytes())
    raw[-20] ^= 0xFF  # same size, other bytes: only the checksum tells
    shard.write_bytes(bytes(raw))
    result = run_script(tmp_path, textwrap.dedent("""
        import sys
        from zhkd.cli import main
        sys.exit(main(["distill", "--data", sys.argv[1], "--teacher", sys.argv[2], "--student", "mini",
                       "--output", sys.argv[3], "--max-steps", "2"]))
    """), data, tiny_classifier, tmp_path / "out", tee=True)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "zhkd distill: error:" in line]
    assert any("sha256 differs" in line and line.startswith("[default0]") for line in errors), result.stderr[-3000:]
    # Rank 0's refusal is rank 1's too, with its message (rank 1 never hashed the shard).
    assert any("sha256 differs" in line and line.startswith("[default1]") for line in errors)
    assert not (tmp_path / "out" / "model.safetensors").exists()


EXACT_WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch, transformers
    from safetensors.torch import save_file
    from zhkd.distill import train as train_module
    from zhkd.distill.collate import Collator
    from zhkd.distill.config import LossConfig, TrainConfig
    from zhkd.distill.reader import ShardReader
    from zhkd.distill.train import JsonlLog, Run, Stage, distributed, run_stages
    from zhkd.models import load_tokenizer

    data, teacher, out, batch = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    optimizers = []
    make_optimizer = train_module.make_optimizer
    train_module.make_optimizer = lambda model, config: optimizers.append(make_optimizer(model, config)) or \\
        optimizers[-1]
    with distributed() as (rank, world, device):
        tokenizer = load_tokenizer(teacher)
        config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64, num_labels=2,
                                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        torch.manual_seed(rank + 1)  # every rank builds other weights: the run must start them from rank 0's
        model = transformers.BertForSequenceClassification(config)
        reader = ShardReader(data, seed=3, rank=rank, world_size=world,
                             columns=["input_ids", "label", "teacher_logits"])
        # A clip no gradient reaches: AdamW's first moments then keep the gradients' scale.
        train = TrainConfig(max_steps=7, batch_size=batch, lr=1e-3, grad_clip=1e9, log_every=1, save_every=1000)
        stage = Stage("kd", reader, Collator("classification", tokenizer, max_length=48, stored_ids=True), train,
                      distilling=True, loss=LossConfig(temperature=2.0, alpha=0.5))
        run = Run(out, "classification", ["negative", "positive"], tokenizer, None,
                  JsonlLog(out / "log.jsonl", enabled=rank == 0), rank=rank, world_size=world, device=device)
        run_stages(model, [stage], run)
        if rank == 0:
            state = optimizers[0].state_dict()["state"]
            save_file({f"{i}.{k}": v for i, s in state.items() for k, v in s.items() if k.startswith("exp_avg")},
                      str(out / "moments.safetensors"))
""")


def test_two_ddp_ranks_end_with_the_weights_of_one_process_on_the_global_batch(tmp_path, tiny_classifier):
    import torch
    from safetensors.torch import load_file

    # 49 rows, 16 a step: in each epoch's last step rank 0 has one row and rank 1 none, and 7 steps cross
    # into the second epoch.
    _, data = sentiment_dataset(tmp_path, 49, tiny_classifier, num_shards=3)
    single, ranks = tmp_path / "single", tmp_path / "ranks"
    for world, out, batch in ((0, single, 16), (2, ranks, 8)):
        result = run_script(tmp_path, EXACT_WORKER, data, tiny_classifier, out, batch, ranks=world)
        assert result.returncode == 0, result.stderr[-3000:]
    starts = [e for e in read_log(ranks) if e["event"] == "stage_start"]
    assert starts[0]["world_size"] == 2 and starts[0]["precision"] == "float32"
    losses = [[(e["soft"], e["hard"]) for e in read_log(out) if e["event"] == "step"] for out in (single, ranks)]
    assert len(losses[0]) == len(losses[1]) == 7
    assert torch.allclose(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-5, atol=1e-6)
    for name in ("model.safetensors", "moments.safetensors"):
        one, two = load_file(str(single / name)), load_file(str(ranks / name))
        assert one.keys() == two.keys()
        for key in one:
            gap = (one[key] - two[key]).abs().max()
            assert torch.allclose(one[key], two[key], rtol=1e-4, atol=1e-6), (name, key, gap)
