"""The lean trainer: one plain loop shared by every stage, read top to bottom.

A *stage* is a source of batches plus how to learn from them: `pre` and `post` (and `zhkd finetune`)
fine-tune on gold labels, `kd` distils on the soft-label shards. Stages run in order on one model;
each ends with a dev score. A step is: collate a batch, forward (under bf16 autocast where the
precision says so: on CUDA by default), sum the losses in float32, all-reduce the position counts (so
every rank divides by the global count), backward, clip, step AdamW at the learning rate of a
warm-up-then-linear-decay schedule. With `torchrun` every rank takes its own share of each batch step
and the model is wrapped in `DistributedDataParallel` (gloo on CPU, NCCL on GPU), which all-reduces
the gradients in buckets while backward is still running; with one process there is no wrapper and
no collective. Nothing in a step waits for the device: losses are summed on it and read once per
`log_every` steps.

Everything that a resumed run needs to continue exactly as an uninterrupted one is checkpointed every
`save_every` steps and at every stage boundary: weights, optimiser moments, the step (the schedule is a
function of it), each rank's reader position and random-number state (CPU and every CUDA device).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from zhkd.distill.checkpoints import Checkpoints
from zhkd.distill.collate import Collator, gather_token_logits
from zhkd.distill.config import LossConfig, TrainConfig
from zhkd.distill.errors import DistillError
from zhkd.distill.loader import BatchLoader
from zhkd.distill.losses import combine, loss_sums
from zhkd.distill.selection import dev_report
from zhkd.outputs import write_atomic
from zhkd.tasks import get_task

SUMMARY = "summary.json"
LOG = "log.jsonl"


@dataclass
class Stage:
    name: str
    source: object  # an EpochOrder with `batch()`: a ShardReader or a RowSource
    collate: Collator
    train: TrainConfig
    distilling: bool = False
    loss: LossConfig = field(default_factory=LossConfig)


class JsonlLog:
    """One JSON object per line: losses, learning rates, dev scores, selections. Rank 0 writes."""

    def __init__(self, path: Path, *, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def __call__(self, event: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"time": round(time.time(), 3), **event}, ensure_ascii=False) + "\n")


@dataclass
class Run:
    """What every stage shares: where to write, what to score on, and this process's place."""

    out_dir: Path
    task: str
    label_names: list[str]
    tokenizer: object
    dev_rows: list[dict] | None
    log: JsonlLog
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"


@contextmanager
def distributed() -> Iterator[tuple[int, int, str]]:
    """(rank, world size, device): from torchrun's environment when present, else one CPU or GPU process.

    A process group this opens is closed on the way out.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    opened = world > 1 and not dist.is_initialized()
    if opened:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    device = "cpu"
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    try:
        yield rank, world, device
    finally:
        if opened:
            dist.destroy_process_group()


def barrier(world_size: int) -> None:
    if world_size > 1:
        torch.distributed.barrier()


def decided_by_rank0(decide, rank: int, world_size: int):
    """`decide()` run on rank 0 only and its result sent to every rank, so all act on one decision
    (a student chosen by timing would differ between ranks that each measured). Rank 0's refusal (any
    ZhkdError) is raised on every rank: rank 0 raises its own, the others a DistillError with its message."""
    from zhkd.errors import ZhkdError

    if world_size == 1:
        return decide()
    box: list = [None]
    refusal = None
    if rank == 0:
        try:
            box[0] = (True, decide())
        except ZhkdError as err:
            refusal, box[0] = err, (False, str(err))
    torch.distributed.broadcast_object_list(box, src=0)
    if refusal is not None:
        raise refusal
    ok, value = box[0]
    if not ok:
        raise DistillError(value)
    return value


def validate_once(path: Path, rank: int, world_size: int) -> dict:
    """The manifest of a dataset that every rank is about to read, its checksums verified by one rank.

    Rank 0 hashes every shard (`zhkd.shards.validate`); the others check the cheap parts (COMPLETED, the
    manifest, sizes, schemas) and compare a fingerprint of their manifest with rank 0's, so a run hashes
    the data once, not once per rank, and a rank on another machine with another copy is still refused.
    Rank 0's refusal is everyone's (`decided_by_rank0`).
    """
    import hashlib

    from zhkd.shards import validate

    if world_size == 1:
        return validate(path)

    def manifest_sha256() -> str:
        return hashlib.sha256((Path(path) / "manifest.json").read_bytes()).hexdigest()

    checked: dict = {}

    def on_rank0() -> str:
        checked["manifest"] = validate(path)
        return manifest_sha256()

    rank0_sha256 = decided_by_rank0(on_rank0, rank, world_size)
    manifest = checked["manifest"] if rank == 0 else validate(path, check_checksums=False)
    if manifest_sha256() != rank0_sha256:
        raise DistillError(f"{path}: rank {rank}'s manifest differs from rank 0's: the ranks read different data")
    return manifest


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up over the first `warmup` of the steps, then linear decay to zero."""
    warm = max(1, round(config.warmup * total))
    if step < warm:
        return config.lr * (step + 1) / warm
    return config.lr * max(0.0, (total - step) / max(1, total - warm))


def make_optimizer(model, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and LayerNorm weights (as BERT was trained)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def forward_sums(model, batch: dict, stage: Stage, device: str) -> dict[str, torch.Tensor]:
    """The summed losses of one batch (see `losses.loss_sums`); host-to-device copies do not block."""
    def to_device(name: str) -> torch.Tensor:
        return batch[name].to(device, non_blocking=True)

    inputs = {k: to_device(k) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    logits = model(**inputs).logits
    labels = to_device("labels") if "labels" in batch else None
    teacher = to_device("teacher_logits") if stage.distilling else None
    mask = None
    spec = get_task(stage.collate.task)
    if spec.per_token:
        logits = gather_token_logits(logits, to_device("token_starts"))
        mask = to_device("token_mask")
    return loss_sums(logits, labels, teacher, stage.loss, mask, kind=spec.label_kind)


def idle_sums(model, device: str) -> dict[str, torch.Tensor]:
    """Zero sums for a rank with no rows in this step, through a forward of one token.

    DistributedDataParallel reduces gradients during backward, so every rank must run forward and backward
    in every step; a rank whose share of an epoch's last step is empty adds exact zeros to the sum.
    """
    ids = torch.zeros((1, 1), dtype=torch.long, device=device)
    zero = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float().sum() * 0.0
    return {"soft_sum": zero, "soft_count": zero.detach(), "hard_sum": zero, "hard_count": zero.detach()}


def all_reduce_sum(tensor: torch.Tensor, run: Run) -> torch.Tensor:
    if run.world_size > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


def data_parallel(model, run: Run):
    """What a step runs forward through: `DistributedDataParallel` over the ranks, the model itself alone.

    Wrapping broadcasts rank 0's weights, so every rank starts from the same ones however it built its
    model. DDP averages the gradients over ranks; the trainer's loss is already a sum over the global
    count, so `train_stage` multiplies it by the world size to make the reduced gradient the one a
    single process would get on the whole batch. Buffers (BERT's position ids) are constants: synced
    when wrapping, not before every forward. Gradients live in DDP's buckets (no second copy).
    """
    if run.world_size == 1:
        return model
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.device(run.device).index] if run.device.startswith("cuda") else None
    # torch 2.13 renamed the option (broadcast_buffers is deprecated there); older releases know the old name.
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True, **no_buffer_sync)


def autocast(config: TrainConfig, device: str):
    """bf16 autocast for the forward where `config.precision` asks for it on this device, else nothing."""
    dtype = config.autocast_dtype(device)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=getattr(torch, dtype))


class LossMeter:
    """Soft and hard loss sums and their position counts since the last log line, kept on the device.

    Reading them is a host sync; it happens once per log interval, not once per step, so the host can
    queue the next steps while the device works. A log line gives each loss's mean over its interval.
    """

    def __init__(self, device: str):
        self.totals = torch.zeros(4, device=device)

    def add(self, totals: torch.Tensor) -> None:
        self.totals += totals

    def take(self) -> tuple[float | None, float | None]:
        soft_sum, soft_count, hard_sum, hard_count = self.totals.tolist()
        self.totals.zero_()
        return (soft_sum / soft_count if soft_count else None, hard_sum / hard_count if hard_count else None)


def evaluate(model, run: Run, stage: str, step: int, config: TrainConfig) -> dict | None:
    """Dev score on rank 0, logged; None without a dev split."""
    if run.dev_rows is None:
        return None
    report = None
    if run.rank == 0:
        report = dev_report(model, run.tokenizer, run.dev_rows, run.task, run.label_names,
                            batch_size=config.batch_size, max_length=config.max_length, device=run.device)
        run.log({"event": "dev", "stage": stage, "step": step, **report})
    barrier(run.world_size)
    return report


def train_stage(model, stage: Stage, run: Run, resume: dict | None = None, done: dict | None = None) -> dict:
    """Run one stage to its last step (continuing from `resume`, a checkpoint of this stage) and score it.

    `done` (the results of earlier stages) goes into every checkpoint so a resumed run skips them.
    """
    config, source = stage.train, stage.source
    loader = BatchLoader(source, config.batch_size, stage.collate, num_workers=config.num_workers,
                         pin_memory=run.device.startswith("cuda"))
    if len(loader) == 0:
        raise DistillError(f"stage {stage.name}: no rows to train on")
    total = config.max_steps or config.epochs * len(loader)
    model.to(run.device).train()
    optimizer = make_optimizer(model, config)
    step = 0
    if resume is None:
        torch.manual_seed(config.seed * 1000 + run.rank)  # dropout; run_stages forks the caller's RNG
    else:
        step = resume["step"]
        restore_checkpoint(resume["path"], optimizer, source, run)
    forward = data_parallel(model, run)
    run.log({"event": "stage_start", "stage": stage.name, "step": step, "total_steps": total,
             "steps_per_epoch": len(loader), "rows": source.num_rows, "world_size": run.world_size,
             "precision": config.autocast_dtype(run.device) or "float32", "device": run.device,
             "train": asdict(config), "loss": asdict(stage.loss) if stage.distilling else None})
    bar = tqdm(total=total, initial=step, desc=stage.name, unit="step", disable=run.rank != 0, dynamic_ncols=True)
    meter = LossMeter(run.device)
    for batch in loader.stream(total - step):
        lr = lr_at(step, total, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(config, run.device):
            sums = forward_sums(forward, batch, stage, run.device) if batch["num_rows"] else \
                idle_sums(forward, run.device)
        totals = all_reduce_sum(torch.stack([sums[k].detach() for k in
                                             ("soft_sum", "soft_count", "hard_sum", "hard_count")]), run)
        loss = combine(sums, {"soft_count": totals[1], "hard_count": totals[3]}, stage.loss,
                       distilling=stage.distilling)
        (loss * run.world_size).backward()  # DDP averages over the ranks; see data_parallel
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        meter.add(totals)
        step += 1
        bar.update()
        if step % config.log_every == 0 or step == total:
            soft, hard = meter.take()
            run.log({"event": "step", "stage": stage.name, "step": step, "epoch": source.epoch, "lr": lr,
                     "soft": soft, "hard": hard})
            bar.set_postfix(soft=soft, hard=hard)
        if step % config.save_every == 0 and step < total:
            save_checkpoint(model, run, {"stage": stage.name, "step": step, "done": done or {}}, optimizer, source)
        if source.consumed == 0 and step < total:  # the batch ended an epoch
            evaluate(model, run, stage.name, step, config)
    bar.close()
    report = evaluate(model, run, stage.name, step, config)
    return {"steps": step, "dev": report}


def save_model(model, tokenizer, out_dir: Path) -> None:
    """A Hugging Face checkpoint: safetensors weights, config, tokenizer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """AdamW's state as named tensors plus its parameter groups as JSON: safetensors, no pickle."""
    state = optimizer.state_dict()
    tensors = {f"{pid}.{key}": value.detach().cpu().contiguous() for pid, entry in state["state"].items()
               for key, value in entry.items()}
    return tensors, {"param_groups": json.dumps(state["param_groups"])}


def save_checkpoint(model, run: Run, position: dict, optimizer=None, source=None) -> None:
    """Write the resumable state as the next numbered checkpoint (see `checkpoints`): the previous one stays
    whole until this one is complete, so a crash at any point leaves one to resume from."""
    from safetensors.torch import save_file

    checkpoints = Checkpoints(run.out_dir)
    if run.rank == 0:
        checkpoints.begin()
    barrier(run.world_size)
    tmp = checkpoints.pending()
    if source is not None:
        (tmp / f"reader-rank{run.rank}.json").write_text(json.dumps(source.state_dict()), encoding="utf-8")
    save_file(rng_tensors(), str(tmp / f"rng-rank{run.rank}.safetensors"))
    barrier(run.world_size)
    if run.rank == 0:
        save_model(model, run.tokenizer, tmp)
        if optimizer is not None:
            tensors, meta = _optimizer_tensors(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"), metadata=meta)
        checkpoints.commit(tmp, {**position, "world_size": run.world_size})
        run.log({"event": "checkpoint", **position})
    barrier(run.world_size)


def restore_checkpoint(checkpoint: Path, optimizer, source, run: Run) -> None:
    """Optimiser moments, this rank's reader position and random state, as saved mid-stage."""
    from safetensors import safe_open

    with safe_open(str(checkpoint / "optimizer.safetensors"), framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
        state: dict[int, dict] = {}
        for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            pid, key = name.split(".", 1)
            state.setdefault(int(pid), {})[key] = f.get_tensor(name)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    source.load_state_dict(json.loads((checkpoint / f"reader-rank{run.rank}.json").read_text("utf-8")))
    with safe_open(str(checkpoint / f"rng-rank{run.rank}.safetensors"), framework="pt") as f:
        restore_rng({name: f.get_tensor(name) for name in f.keys()}, run)  # noqa: SIM118 (not a mapping)


# --- random state in checkpoints: the CPU generator and every CUDA device's ---------------------------------
# Dropout on a GPU draws from the CUDA generator, so a resumed GPU run equals an uninterrupted one only with
# it restored too. Saved as named tensors (safetensors): "cpu", and "cuda.0", "cuda.1", ... per device.

def cuda_devices(run: Run) -> list[int]:
    """The CUDA devices whose random state a run touches (torch.manual_seed seeds them all)."""
    return list(range(torch.cuda.device_count())) if run.device.startswith("cuda") else []


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor], run: Run) -> None:
    """Set the saved random state. CUDA states that this machine cannot take (no CUDA, another device
    count) are left, and the log and rank 0's stderr say so: dropout then differs from the interrupted run."""
    torch.set_rng_state(tensors["cpu"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(name.startswith("cuda.") for name in tensors))]
    if not cuda:
        return
    if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
        return
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    message = (f"the checkpoint holds the random state of {len(cuda)} CUDA device(s), this machine has {here}: "
               "dropout will differ from the uninterrupted run")
    run.log({"event": "warning", "message": message})
    if run.rank == 0:
        print(f"zhkd: warning: {message}", file=sys.stderr)


def latest_checkpoint(out_dir: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint of a run and its state (None when it has none)."""
    return Checkpoints(out_dir).latest()


def run_stages(model, stages: list[Stage], run: Run, *, resume: bool = False) -> dict:
    """Run the stages in order on `model`; write each stage's model, the final model and a summary.

    With `resume`, stages already finished are skipped and the interrupted one continues from the
    last checkpoint. The caller's global random state is left as it was.
    """
    from safetensors.torch import load_file

    run.out_dir.mkdir(parents=True, exist_ok=True)
    latest = latest_checkpoint(run.out_dir) if resume else None
    # A run killed before its first checkpoint resumes from the start: the same run, from step 0.
    state = {**latest[1], "path": latest[0]} if latest is not None else None
    if state is not None and state["world_size"] != run.world_size:
        raise DistillError(f"cannot resume: the checkpoint was written by {state['world_size']} processes, "
                           f"this run has {run.world_size}")
    done: dict = dict(state.get("done", {})) if state else {}
    if state is not None:
        weights = load_file(str(state["path"] / "model.safetensors"))
        unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
        if unexpected:
            raise DistillError(f"cannot resume: the checkpoint holds weights this model lacks ({unexpected[0]}, ...)")
        run.log({"event": "resume", **{k: v for k, v in state.items() if k != "path"}})
    model.to(run.device)  # every rank starts from rank 0's weights: data_parallel broadcasts them
    with torch.random.fork_rng(devices=cuda_devices(run)):
        for stage in stages:
            if stage.name in done:
                continue
            mid_stage = state if state is not None and state.get("stage") == stage.name else None
            result = train_stage(model, stage, run, mid_stage, done)
            done[stage.name] = result
            if run.rank == 0:
                save_model(model, run.tokenizer, run.out_dir / "stages" / stage.name)
            run.log({"event": "stage_end", "stage": stage.name, **result})
            save_checkpoint(model, run, {"stage": None, "step": 0, "done": done})
    summary = {"complete": True, "task": run.task, "label_names": run.label_names,
               "stages": {name: done[name] for name in (s.name for s in stages)}}
    if run.rank == 0:
        save_model(model, run.tokenizer, run.out_dir)
        write_atomic(run.out_dir / SUMMARY, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
        Checkpoints(run.out_dir).clear()
    barrier(run.world_size)
    return summary
