"""Evaluation by task type: each model's score, size and measured speed, against the teacher and a
BERT-base-shaped reference.

The reference is built here with random weights, the teacher's vocabulary size and the task's head:
speed depends on a model's shape, not on its weights, so it stands in for BERT-base without a download.
Every speed-up and compression figure is a ratio of values recorded in the result, measured on this
machine in this run, never a constant.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from zhkd.distill.errors import DistillError
from zhkd.distill.latency import MIN_RUNS, measure_latency
from zhkd.distill.metrics import classification_scores, ner_scores
from zhkd.tasks import get_task

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass(frozen=True)
class LatencySettings:
    """How speed is measured. `seq_len` None: the median token length of the test set."""

    runs: int = 30
    warmup: int = 3
    max_seconds: float = 10.0  # per measurement: stop early (after at least 5 runs) once this is spent
    throughput_batch: int = 32
    seq_len: int | None = None
    devices: tuple[str, ...] | None = None  # None: CPU, and CUDA when present


def check_task(task: str) -> None:
    get_task(task)  # an unknown task is refused before any model loads


def _one_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def check_location(name_or_path: str | Path) -> None:
    """A local checkpoint directory, or a hub id when the hub may be reached; anything else is refused."""
    path = Path(name_or_path)
    if path.exists():
        if not (path / "config.json").is_file():
            raise DistillError(f"{path} is not a model directory (no config.json)")
        return
    looks_local = str(name_or_path).startswith((".", "/", "~")) or not _HUB_ID.fullmatch(str(name_or_path))
    if looks_local or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DistillError(f"no model directory at {name_or_path}")


def load_for_task(task: str, name_or_path: str | Path):
    """Model and tokenizer of a checkpoint, for the task's head."""
    from zhkd.models import load_model, load_tokenizer

    check_location(name_or_path)
    try:
        return load_model(get_task(task).model_kind, name_or_path), load_tokenizer(name_or_path)
    except DistillError as err:
        raise DistillError(_one_line(err)) from None


def label_names_of(name_or_path: str | Path) -> list[str]:
    """The label names a checkpoint was trained with, read from its config alone."""
    check_location(name_or_path)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(name_or_path), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise DistillError(f"cannot read the config of {name_or_path}: {_one_line(err)}") from None
    return [config.id2label[i] for i in range(config.num_labels)]


def check_labels(name: str, own: Sequence[str], label_names: Sequence[str]) -> None:
    """A model is scored only on the label set it was trained with (in any order)."""
    if sorted(own) != sorted(label_names):
        raise DistillError(f"model {name!r} has labels {', '.join(own)} but the test set has "
                           f"{', '.join(label_names)}")


def _label_map(name: str, model, label_names: Sequence[str]) -> list[int]:
    """Model label id → position in `label_names`."""
    from zhkd.models import model_labels

    own = model_labels(model)
    check_labels(name, own, label_names)
    return [list(label_names).index(label) for label in own]


def score_model(task: str, name: str, model, tokenizer, rows: Sequence[dict], label_names: Sequence[str], *,
                batch_size: int = 32, max_length: int = 512, device: str | None = None,
                progress: bool = False) -> dict[str, float]:
    """The task's metrics of one model on labelled rows (labels as ids into `label_names`)."""
    from zhkd.distill.predict import predict_labels

    mapping = _label_map(name, model, label_names)
    predicted = predict_labels(model, tokenizer, rows, task, batch_size=batch_size, max_length=max_length,
                               device=device, progress=progress)
    if get_task(task).per_token:
        gold = [[label_names[t] for t in r["tags"]] for r in rows]
        pred = [[label_names[mapping[t]] for t in tags] for tags in predicted]
        return ner_scores(gold, pred)
    return classification_scores([r["label"] for r in rows], [mapping[p] for p in predicted], len(label_names))


def median_token_length(task: str, tokenizer, rows: Sequence[dict], max_length: int = 512) -> int:
    """What a typical test input costs: the median number of tokens, special tokens included."""
    from zhkd.distill.collate import encode_texts, encode_tokens

    if get_task(task).per_token:
        ids, _ = encode_tokens(tokenizer, [r["tokens"] for r in rows], max_length=max_length)
    else:
        pairs = [r["text_pair"] for r in rows] if get_task(task).has_pair else None
        ids = encode_texts(tokenizer, [r["text"] for r in rows], pairs, max_length=max_length)
    return max(1, statistics.median_low(len(i) for i in ids))


def measure_speed(model, settings: LatencySettings, seq_len: int, devices: Sequence[str]) -> dict:
    """Per device: latency at batch 1 and throughput at `throughput_batch`, as recorded Latency dicts."""
    speed = {}
    for device in devices:
        one = measure_latency(model, seq_len=seq_len, batch_size=1, runs=settings.runs,
                              warmup=settings.warmup, device=device, max_seconds=settings.max_seconds)
        many = measure_latency(model, seq_len=seq_len, batch_size=settings.throughput_batch, runs=settings.runs,
                               warmup=settings.warmup, device=device, max_seconds=settings.max_seconds)
        speed[device] = {"batch_1": one.to_dict(), f"batch_{settings.throughput_batch}": many.to_dict()}
    model.to("cpu")
    return speed


def size_on_disk(name_or_path: str | Path) -> int | None:
    """Bytes of the checkpoint's safetensors files (None for a hub id)."""
    path = Path(name_or_path)
    return sum(f.stat().st_size for f in path.glob("*.safetensors")) if path.is_dir() else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def compare(entry: dict, base: dict | None, throughput_key: str) -> dict | None:
    """Compression and speed-ups of `entry` against `base`, from their recorded measurements."""
    if base is None:
        return None
    out = {"compression": _ratio(base["parameters"], entry["parameters"]), "speedup": {}, "throughput_speedup": {}}
    for device, speed in entry["latency"].items():
        if device in base["latency"]:
            out["speedup"][device] = _ratio(base["latency"][device]["batch_1"]["p50_ms"], speed["batch_1"]["p50_ms"])
            out["throughput_speedup"][device] = _ratio(speed[throughput_key]["rows_per_s"],
                                                       base["latency"][device][throughput_key]["rows_per_s"])
    return out


def _machine(devices: Sequence[str]) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    machine = {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if "cuda" in devices:
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


def _say(message: str, progress: bool) -> None:
    if progress:
        print(f"evaluate: {message}", file=sys.stderr, flush=True)


def _check_inputs(task: str, candidates: list[tuple[str, str | Path, str]], test_rows: Sequence[dict],
                  label_names: Sequence[str], reference: str | None) -> None:
    """Refuse bad input before minutes of scoring and timing."""
    from zhkd.distill.students import get_shape

    check_task(task)
    if not candidates:
        raise DistillError("no model to evaluate")
    names = [name for name, _, _ in candidates]
    if len(set(names)) != len(names):
        raise DistillError(f"model names must differ; given {', '.join(names)}")
    if not test_rows:
        raise DistillError("the test set is empty")
    label_key = get_task(task).label_field
    if any(r.get(label_key) is None for r in test_rows):
        raise DistillError("every test row needs a gold label")
    if reference is not None:
        get_shape(reference)
    for name, path, _ in candidates:
        check_labels(name, label_names_of(path), label_names)


def _entry(name: str, role: str, path: str | Path | None, model, speed: dict, scores: dict | None,
           task: str) -> dict:
    return {
        "name": name, "role": role, "path": None if path is None else str(path),
        "parameters": sum(p.numel() for p in model.parameters()),
        "size_bytes": None if path is None else size_on_disk(path),
        "shape": {"layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size,
                  "vocab_size": model.config.vocab_size},
        "scores": scores, "score": None if scores is None else scores[get_task(task).headline],
        "latency": speed,
    }


def evaluate_models(task: str, models: Mapping[str, str | Path], test_rows: Sequence[dict],
                    label_names: Sequence[str], out_dir: str | Path, *, teacher: str | Path | None = None,
                    teacher_name: str = "teacher", reference: str | None = "bert-base",
                    latency: LatencySettings = LatencySettings(), batch_size: int = 32, max_length: int = 512,
                    device: str | None = None, test_source: str | None = None, progress: bool = True) -> dict:
    """Score, time and size every model (and the teacher), write DIR/evaluation.{json,md,png}, return the dict.

    `test_rows` carry label ids into `label_names` (as `distill.predict.read_task_rows` gives them).
    Ratios are against the teacher (when given) and a random-weight `reference` shape (None: none).
    """
    import torch

    from zhkd.distill.students import build_model

    candidates = ([(teacher_name, teacher, "teacher")] if teacher is not None else []) + [
        (name, path, "model") for name, path in models.items()
    ]
    _check_inputs(task, candidates, test_rows, label_names, reference)
    devices = tuple(latency.devices or (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)))
    entries: list[dict] = []
    seq_len = latency.seq_len
    for index, (name, path, role) in enumerate(candidates, 1):
        step = f"[{index}/{len(candidates)}] {name}"
        _say(f"{step}: loading {path}", progress)
        model, tokenizer = load_for_task(task, path)
        if seq_len is None:  # from the first model's tokenizer (the teacher's when given): the same for all
            seq_len = min(median_token_length(task, tokenizer, test_rows, max_length),
                          model.config.max_position_embeddings)
        _say(f"{step}: scoring {len(test_rows):,} rows", progress)
        scores = score_model(task, name, model, tokenizer, test_rows, label_names, batch_size=batch_size,
                             max_length=max_length, device=device, progress=progress)
        _say(f"{step}: timing on {', '.join(devices)} at sequence length {seq_len}", progress)
        entries.append(_entry(name, role, path, model, measure_speed(model, latency, seq_len, devices), scores, task))
        del model

    reference_entry = None
    if reference is not None:
        vocab_size = entries[0]["shape"]["vocab_size"]
        _say(f"timing the {reference} reference (random weights, vocabulary {vocab_size:,})", progress)
        ref_model = build_model(reference, kind=get_task(task).model_kind, vocab_size=vocab_size,
                                labels=list(label_names))
        reference_entry = _entry(f"{reference} reference", "reference", None, ref_model,
                                 measure_speed(ref_model, latency, seq_len, devices), None, task)
        del ref_model

    throughput_key = f"batch_{latency.throughput_batch}"
    teacher_entry = entries[0] if teacher is not None else None
    for entry in entries + ([reference_entry] if reference_entry else []):
        entry["vs_teacher"] = compare(entry, teacher_entry, throughput_key)
        entry["vs_reference"] = compare(entry, reference_entry, throughput_key)
        entry["score_pct_of_teacher"] = (
            100 * entry["score"] / teacher_entry["score"]
            if teacher_entry and teacher_entry["score"] and entry["score"] is not None else None
        )
    result = {
        "task": task,
        "reference_shape": reference,
        "primary_metric": get_task(task).headline,
        "metrics": list(get_task(task).metrics),
        "label_names": list(label_names),
        "test": {"rows": len(test_rows), "source": test_source},
        "latency_settings": {
            **asdict(latency), "devices": list(devices), "seq_len": seq_len,
            "seq_len_from": "given" if latency.seq_len else "median token length of the test set",
            "speedup": "ratio of p50 latency at batch 1",
            "throughput_speedup": f"ratio of rows/s at batch {latency.throughput_batch}",
        },
        "machine": _machine(devices),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "models": entries,
        "reference": reference_entry,
    }
    write_outputs(result, out_dir)
    return result


# --- outputs ------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _device_name(device: str) -> str:
    return "GPU" if device == "cuda" else device.upper()


def render_markdown(result: dict) -> str:
    """The evaluation as Markdown: one table per timing device, then how it was measured."""
    settings = result["latency_settings"]
    metrics = result["metrics"]
    throughput_key = f"batch_{settings['throughput_batch']}"
    has_teacher = any(e["role"] == "teacher" for e in result["models"])
    reference = result["reference"]
    rows = result["models"] + ([reference] if reference else [])
    lines = [f"## Evaluation: {result['task']} ({result['primary_metric']} on {result['test']['rows']:,} test rows)",
             ""]
    for device in settings["devices"]:
        name = _device_name(device)
        header = ["model", *metrics]
        if has_teacher:
            header.append("% of teacher")
        header += ["parameters", "size (MB)", f"{name} p50 ms (batch 1)", "p95 ms",
                   f"rows/s (batch {settings['throughput_batch']})"]
        for base, present in (("teacher", has_teacher), (result["reference_shape"], reference is not None)):
            if present:
                header += [f"speed-up vs {base}", f"throughput vs {base}", f"compression vs {base}"]
        dtypes = sorted({e["latency"][device]["batch_1"].get("dtype") or "float32" for e in rows})
        lines += [f"### {name} ({', '.join(dtypes)} weights)", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        for entry in rows:
            label = entry["name"] + (" (teacher)" if entry["role"] == "teacher" and entry["name"] != "teacher" else "")
            if entry["role"] == "reference":
                label += " (random weights)"
            scores = entry["scores"] or {}
            cells = [label, *(_fmt(scores.get(m), ".4f") for m in metrics)]
            if has_teacher:
                cells.append(_fmt(entry.get("score_pct_of_teacher"), ".1f", "%"))
            speed = entry["latency"][device]
            size = entry["size_bytes"] / 1e6 if entry["size_bytes"] is not None else None
            cells += [_params(entry["parameters"]), _fmt(size, ".1f"), f"{speed['batch_1']['p50_ms']:.2f}",
                      f"{speed['batch_1']['p95_ms']:.2f}", f"{speed[throughput_key]['rows_per_s']:,.0f}"]
            for key, present in (("vs_teacher", has_teacher), ("vs_reference", reference is not None)):
                if not present:
                    continue
                ratios = entry.get(key)
                if ratios is None:
                    cells += ["—"] * 3
                    continue
                cells += [_fmt(ratios["speedup"].get(device), ".2f", "x"),
                          _fmt(ratios["throughput_speedup"].get(device), ".2f", "x"),
                          _fmt(ratios["compression"], ".1f", "x")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    machine = result["machine"]
    lines.append(
        f"Sequence length {settings['seq_len']} ({settings['seq_len_from']}); latency p50/p95 over up to "
        f"{settings['runs']} runs after {settings['warmup']} warm-up at batch 1, throughput at batch "
        f"{settings['throughput_batch']} (a measurement stops after at least {MIN_RUNS} runs once it has "
        f"taken {settings['max_seconds']:g} s; each latency record keeps its count). "
        f"Speed-up: {settings['speedup']}; throughput: "
        f"{settings['throughput_speedup']}; compression: ratio of parameters. "
        f"Machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['torch_threads']} torch threads"
        + (f", {machine['gpu']}" if "gpu" in machine else "") + f"; {result['created']}."
    )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str | Path) -> Path:
    """Score against speed-up (vs the reference, else vs the teacher), one labelled point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    device = result["latency_settings"]["devices"][0]
    against = "vs_reference" if result["reference"] else "vs_teacher"
    base = f"{result['reference_shape']} shape" if result["reference"] else "teacher"
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    farthest = 1.0
    for entry in result["models"]:
        ratios = entry.get(against)
        x = ratios["speedup"].get(device) if ratios else 1.0
        farthest = max(farthest, x)
        teacher = entry["role"] == "teacher"
        ax.scatter([x], [entry["score"]], s=60, marker="*" if teacher else "o", color="C1" if teacher else "C0",
                   zorder=3)
        ax.annotate(entry["name"], (x, entry["score"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if teacher:
            ax.axhline(entry["score"], color="C1", linestyle="--", linewidth=0.8, zorder=1)
    ax.set_xlim(0, farthest * 1.2)  # room for the rightmost label
    ax.margins(y=0.1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}x"))
    ax.set_xlabel(f"speed-up vs {base} ({_device_name(device)}, p50 latency at batch 1)")
    ax.set_ylabel(f"{result['primary_metric']} ({result['task']})")
    ax.set_title(f"{result['task']}: score against speed-up")
    ax.grid(True, linewidth=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_outputs(result: dict, out_dir: str | Path) -> dict[str, Path]:
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "evaluation.json", "md": out_dir / "evaluation.md", "png": out_dir / "evaluation.png"}
    paths["json"].write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(result), encoding="utf-8")
    plot(result, paths["png"])
    return paths
