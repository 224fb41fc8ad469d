"""The lean trainer: one plain loop shared by every stage, read top to bottom.

A *stage* is a source of batches plus how to learn from them: `pre` and `post` (and `zhkd finetune`)
fine-tune on gold labels, `kd` distils on the soft-label shards. Stages run in order on one model;
each ends with a dev score. A step is: collate a batch, forward, sum the losses, all-reduce the
position counts (so every rank divides by the global count), backward, all-reduce the gradients,
clip, step AdamW at the learning rate of a warm-up-then-linear-decay schedule. With one process the
all-reduces are skipped; with `torchrun` every rank takes its own share of each batch step.

Everything that a resumed run needs to continue exactly as an uninterrupted one is checkpointed every
`save_every` steps and at every stage boundary: weights, optimiser moments, the step (the schedule is a
function of it), each rank's reader position and random-number state.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    (a student chosen by timing would differ between ranks that each measured). Rank 0's refusal is
    raised on every rank."""
    if world_size == 1:
        return decide()
    box: list = [None]
    if rank == 0:
        try:
            box[0] = (True, decide())
        except DistillError as err:
            box[0] = (False, str(err))
    torch.distributed.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise DistillError(value)
    return value


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
    """The summed losses of one batch (see `losses.loss_sums`)."""
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    logits = model(**inputs).logits
    labels = batch["labels"].to(device) if "labels" in batch else None
    teacher = batch["teacher_logits"].to(device) if stage.distilling else None
    mask = None
    spec = get_task(stage.collate.task)
    if spec.per_token:
        logits = gather_token_logits(logits, batch["token_starts"].to(device))
        mask = batch["token_mask"].to(device)
    return loss_sums(logits, labels, teacher, stage.loss, mask, kind=spec.label_kind)


def all_reduce_sum(tensor: torch.Tensor, run: Run) -> torch.Tensor:
    if run.world_size > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


def reduce_gradients(model, run: Run) -> None:
    """Sum every gradient over the ranks (losses are already divided by the global counts)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if run.world_size > 1:
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


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
    loader = BatchLoader(source, config.batch_size, stage.collate, num_workers=config.num_workers)
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
    run.log({"event": "stage_start", "stage": stage.name, "step": step, "total_steps": total,
             "steps_per_epoch": len(loader), "rows": source.num_rows, "world_size": run.world_size,
             "train": asdict(config), "loss": asdict(stage.loss) if stage.distilling else None})
    bar = tqdm(total=total, initial=step, desc=stage.name, unit="step", disable=run.rank != 0, dynamic_ncols=True)
    while step < total:
        for batch in loader:
            lr = lr_at(step, total, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if batch["num_rows"]:
                sums = forward_sums(model, batch, stage, run.device)
            else:  # this rank has no rows in the epoch's last step: it still takes part in the reductions
                zero = torch.zeros((), device=run.device)
                sums = {"soft_sum": zero, "soft_count": zero, "hard_sum": zero, "hard_count": zero}
            totals = all_reduce_sum(torch.stack([sums[k].detach().float() for k in
                                                 ("soft_sum", "soft_count", "hard_sum", "hard_count")]), run)
            counts = {"soft_count": totals[1].item(), "hard_count": totals[3].item()}
            loss = combine(sums, counts, stage.loss, distilling=stage.distilling)
            if loss.requires_grad:
                loss.backward()
            reduce_gradients(model, run)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update()
            soft = totals[0].item() / counts["soft_count"] if counts["soft_count"] else None
            hard = totals[2].item() / counts["hard_count"] if counts["hard_count"] else None
            if step % config.log_every == 0 or step == total:
                run.log({"event": "step", "stage": stage.name, "step": step, "epoch": source.epoch, "lr": lr,
                         "soft": soft, "hard": hard})
                bar.set_postfix(soft=soft, hard=hard)
            if step % config.save_every == 0 and step < total:
                save_checkpoint(model, run, {"stage": stage.name, "step": step, "done": done or {}}, optimizer,
                                source)
            if step >= total:
                break
        else:
            if step < total:
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
    save_file({"cpu": torch.get_rng_state()}, str(tmp / f"rng-rank{run.rank}.safetensors"))
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
        torch.set_rng_state(f.get_tensor("cpu"))


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
    model.to(run.device)
    if run.world_size > 1:  # every rank starts from rank 0's weights, however each built its model
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, 0)
    with torch.random.fork_rng(devices=[]):
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
