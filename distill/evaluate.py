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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from zhkd.distill.errors import DistillError
from zhkd.distill.latency import MIN_RUNS, forward_call, serving_dtype, summarise, time_in_rounds
from zhkd.distill.metrics import task_scores
from zhkd.tasks import get_task

DEVICES = ("cpu", "cuda")
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

    def __post_init__(self):
        for value, what in ((self.runs, "--runs"), (self.throughput_batch, "--throughput-batch"),
                            (self.seq_len or 1, "--seq-len")):
            if value < 1:
                raise DistillError(f"{what} must be at least 1")
        if self.warmup < 0:
            raise DistillError("--warmup must not be negative")
        if self.max_seconds <= 0:
            raise DistillError("--max-seconds must be positive")
        if self.devices is not None and any(d not in DEVICES for d in self.devices):
            raise DistillError(f"--devices takes {' and '.join(DEVICES)}, not {','.join(self.devices)!r}")


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


def _config(name_or_path: str | Path):
    check_location(name_or_path)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(name_or_path), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise DistillError(f"cannot read the config of {name_or_path}: {_one_line(err)}") from None


def label_names_of(name_or_path: str | Path) -> list[str]:
    """The label names a checkpoint was trained with, read from its config alone."""
    config = _config(name_or_path)
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
    spec = get_task(task)
    if spec.per_token or spec.multilabel:  # a list of label ids per row
        return task_scores(task, rows, [[mapping[t] for t in ids] for ids in predicted], label_names)
    return task_scores(task, rows, [mapping[p] for p in predicted], label_names)


def median_token_length(task: str, tokenizer, rows: Sequence[dict], max_length: int = 512) -> int:
    """What a typical test input costs: the median number of tokens, special tokens included."""
    from zhkd.distill.collate import encode_texts, encode_tokens

    if get_task(task).per_token:
        ids, _ = encode_tokens(tokenizer, [r["tokens"] for r in rows], max_length=max_length)
    else:
        pairs = [r["text_pair"] for r in rows] if get_task(task).has_pair else None
        ids = encode_texts(tokenizer, [r["text"] for r in rows], pairs, max_length=max_length)
    return max(1, statistics.median_low(len(i) for i in ids))


# What a timed model gives the timer: for a device and a batch size, its call, the input length it runs on
# and the dtype of its weights (None: not a torch model), or None where it does not run (a classical
# baseline on a GPU).
Timer = Callable[[str, int], "tuple[Callable[[], object], int, str | None] | None"]


def transformer_timer(model, seq_len: int) -> Timer:
    """A checkpoint's forward pass over `seq_len` random ids (its speed depends on its shape alone), in the
    dtype it would serve in on the device (`serving_dtype`: bf16 on a GPU, on a copy)."""
    def timer(device: str, batch: int):
        dtype = serving_dtype(device)
        return forward_call(model, seq_len=seq_len, batch_size=batch, device=device, dtype=dtype), seq_len, dtype

    return timer


def time_together(timers: Mapping[str, Timer], settings: LatencySettings, devices: Sequence[str]) -> dict[str, dict]:
    """Per model and device: latency at batch 1 and throughput at `throughput_batch` (recorded Latency
    dicts), all models of a device and batch size timed in alternation (`time_in_rounds`)."""
    import torch

    speed: dict[str, dict] = {name: {} for name in timers}
    for device in devices:
        for batch in dict.fromkeys((1, settings.throughput_batch)):
            prepared = {name: made for name, timer in timers.items() if (made := timer(device, batch)) is not None}
            if device == "cuda":
                torch.cuda.synchronize()
            with torch.inference_mode():
                times = time_in_rounds({name: call for name, (call, _, _) in prepared.items()}, runs=settings.runs,
                                       warmup=settings.warmup, max_seconds=settings.max_seconds)
            for name, (_, length, dtype) in prepared.items():
                record = summarise(times[name], device=device, dtype=dtype, seq_len=length,
                                   batch_size=batch).to_dict()
                speed[name].setdefault(device, {})[f"batch_{batch}"] = record
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
                  label_names: Sequence[str], reference: str | None, baseline: str | None) -> None:
    """Refuse bad input before minutes of scoring and timing (`baseline`: its name, when one is trained)."""
    from zhkd.distill.students import get_shape
    from zhkd.models import head_mismatch

    check_task(task)
    if not candidates and baseline is None:
        raise DistillError("no model to evaluate")
    names = [name for name, _, _ in candidates] + ([baseline] if baseline is not None else [])
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
        mismatch = head_mismatch(_config(path), task)
        if mismatch:
            raise DistillError(f"model {name!r} {mismatch}")
        check_labels(name, label_names_of(path), label_names)


def _entry(name: str, role: str, path: str | Path | None, model, scores: dict | None, task: str) -> dict:
    """A checkpoint's row; its `latency` is filled in once every model has been timed together."""
    return {
        "name": name, "role": role, "path": None if path is None else str(path),
        "parameters": sum(p.numel() for p in model.parameters()),
        "size_bytes": None if path is None else size_on_disk(path),
        "shape": {"layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size,
                  "vocab_size": model.config.vocab_size},
        "scores": scores, "score": None if scores is None else scores[get_task(task).headline],
        "latency": {},
    }


def row_length(task: str, row: dict) -> int:
    """Characters of a row (tokens for NER; both texts of a pair)."""
    if get_task(task).per_token:
        return len(row["tokens"])
    return len(row["text"]) + len(row.get("text_pair") or "")


def median_row(task: str, rows: Sequence[dict]) -> dict:
    """The row of median length: a classical baseline's timed input, as the median token length is the
    transformers'."""
    ordered = sorted(rows, key=lambda row: row_length(task, row))
    return ordered[(len(ordered) - 1) // 2]


def _baseline_entry(task: str, name: str, trained, rows: Sequence[dict], label_names: Sequence[str],
                    out_dir: Path) -> tuple[dict, Timer]:
    """The classical baseline's row, scored like every model, and its timer: raw rows in, label ids out
    (its featurisation included), on the CPU only."""
    scores = task_scores(task, rows, trained.model.predict(rows), label_names)
    timed = median_row(task, rows)
    length = row_length(task, timed)
    entry = {
        "name": name, "role": "baseline", "path": str(out_dir), "parameters": trained.model.parameters(),
        "size_bytes": trained.size_bytes, "shape": None, "baseline": trained.record(),
        "scores": scores, "score": scores[get_task(task).headline], "latency": {},
    }

    def timer(device: str, batch: int):
        if device != "cpu":
            return None
        batch_rows = [timed] * batch
        return (lambda: trained.model.predict(batch_rows)), length, None

    return entry, timer


def evaluate_models(task: str, models: Mapping[str, str | Path], test_rows: Sequence[dict],
                    label_names: Sequence[str], out_dir: str | Path, *, teacher: str | Path | None = None,
                    teacher_name: str = "teacher", reference: str | None = "bert-base",
                    latency: LatencySettings = LatencySettings(), batch_size: int = 32, max_length: int = 512,
                    device: str | None = None, test_source: str | None = None, progress: bool = True,
                    baseline_train: Sequence[dict] | None = None, baseline_dev: Sequence[dict] | None = None,
                    baseline_name: str = "baseline") -> dict:
    """Score, time and size every model (and the teacher), write DIR/evaluation.{json,md,png}, return the dict.

    `test_rows` carry label ids into `label_names` (as `distill.predict.read_task_rows` gives them).
    Ratios are against the teacher (when given) and a random-weight `reference` shape (None: none).
    With `baseline_train`, the task's classical baseline (`distill.baseline`) is trained on those rows
    (its setting chosen on `baseline_dev` when given), saved in DIR/baseline/ and reported as one more
    row; a label kind without a baseline says so in one line and is evaluated without it. All models
    are timed together, in alternation, once every one is scored.
    """
    import torch

    from zhkd.distill.baseline import BaselineUnavailable, baseline_class, train_baseline
    from zhkd.distill.students import build_model

    candidates = ([(teacher_name, teacher, "teacher")] if teacher is not None else []) + [
        (name, path, "model") for name, path in models.items()
    ]
    baseline_info: dict | None = None
    if baseline_train is not None:
        try:
            baseline_class(task)
        except BaselineUnavailable as err:
            print(f"evaluate: {err}", file=sys.stderr, flush=True)
            baseline_info, baseline_train = {"available": False, "reason": str(err)}, None
    _check_inputs(task, candidates, test_rows, label_names, reference,
                  baseline_name if baseline_train is not None else None)
    devices = tuple(latency.devices or (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)))
    out_dir = Path(out_dir)
    entries: list[dict] = []
    timers: dict[str, Timer] = {}
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
        entries.append(_entry(name, role, path, model, scores, task))
        timers[name] = transformer_timer(model, seq_len)

    if baseline_train is not None:
        _say(f"training the classical baseline on {len(baseline_train):,} rows"
             + (f", its setting chosen on {len(baseline_dev):,} dev rows" if baseline_dev else ""), progress)
        trained = train_baseline(task, baseline_train, label_names, out_dir / "baseline", dev_rows=baseline_dev)
        _say(f"baseline {trained.model.kind} {trained.settings} trained in {trained.train_seconds:.1f} s; "
             f"scoring {len(test_rows):,} rows", progress)
        entry, timers[baseline_name] = _baseline_entry(task, baseline_name, trained, test_rows, label_names,
                                                        out_dir / "baseline")
        entries.insert(1 if teacher is not None else 0, entry)
        baseline_info = {"available": True, "name": baseline_name, **trained.record()}

    reference_entry = None
    checkpoints = [e for e in entries if e["role"] != "baseline"]
    if reference is not None and not checkpoints:
        _say(f"no checkpoint to take a vocabulary from: the {reference} reference is left out", progress)
        reference = None
    if reference is not None:
        vocab_size = checkpoints[0]["shape"]["vocab_size"]
        ref_model = build_model(reference, kind=get_task(task).model_kind, vocab_size=vocab_size,
                                labels=list(label_names), problem_type=get_task(task).problem_type)
        reference_entry = _entry(f"{reference} reference", "reference", None, ref_model, None, task)
        timers[reference_entry["name"]] = transformer_timer(ref_model, seq_len)

    _say(f"timing {len(timers)} model{'s' if len(timers) != 1 else ''} in alternation on {', '.join(devices)}"
         + (f" at sequence length {seq_len}" if seq_len else ""), progress)
    speed = time_together(timers, latency, devices)
    for entry in entries + ([reference_entry] if reference_entry else []):
        entry["latency"] = speed[entry["name"]]
    del timers
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
            "order": "in alternation: each round times every model once, the order rotating by one model a round",
            "speedup": "ratio of p50 latency at batch 1",
            "throughput_speedup": f"ratio of rows/s at batch {latency.throughput_batch}",
        },
        "machine": _machine(devices),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "models": entries,
        "reference": reference_entry,
        "baseline": baseline_info,
    }
    write_outputs(result, out_dir)
    return result


# --- outputs ------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _setting(settings: dict) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in settings.items())


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
        header += ["parameters", "size (MB)", f"{name} p50 ms, batch 1 (p10–p90)",
                   f"rows/s (batch {settings['throughput_batch']})"]
        for base, present in (("teacher", has_teacher), (result["reference_shape"], reference is not None)):
            if present:
                header += [f"speed-up vs {base}", f"throughput vs {base}", f"compression vs {base}"]
        dtypes = sorted({speed["batch_1"]["dtype"] for e in rows
                         if (speed := e["latency"].get(device)) and speed["batch_1"].get("dtype")})
        title = f"### {name} ({', '.join(dtypes)} weights)" if dtypes else f"### {name}"
        lines += [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for entry in rows:
            label = entry["name"] + (" (teacher)" if entry["role"] == "teacher" and entry["name"] != "teacher" else "")
            if entry["role"] == "reference":
                label += " (random weights)"
            elif entry["role"] == "baseline":
                label += f" ({entry['baseline']['kind']})"
            scores = entry["scores"] or {}
            cells = [label, *(_fmt(scores.get(m), ".4f") for m in metrics)]
            if has_teacher:
                cells.append(_fmt(entry.get("score_pct_of_teacher"), ".1f", "%"))
            speed = entry["latency"].get(device)
            size = entry["size_bytes"] / 1e6 if entry["size_bytes"] is not None else None
            cells += [_params(entry["parameters"]), _fmt(size, ".1f")]
            if speed is None:  # a model that does not run on this device (the classical baseline on a GPU)
                cells += ["—", "—"]
            else:
                one = speed["batch_1"]
                cells += [f"{one['p50_ms']:.2f} ({one['p10_ms']:.2f}–{one['p90_ms']:.2f})",
                          f"{speed[throughput_key]['rows_per_s']:,.0f}"]
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
    baseline = result.get("baseline")
    if baseline and baseline["available"]:
        tuning = baseline["tuning"]
        dev_key = f"dev_{result['primary_metric']}"
        chosen = "its default setting" if tuning[0][dev_key] is None else (
            f"chosen by dev {result['primary_metric']}: "
            + "; ".join(f"{_setting(t['settings'])} → {t[dev_key]:.4f}" for t in tuning))
        lines += [f"Baseline: {baseline['description']}, {_setting(baseline['settings'])} ({chosen}), trained on "
                  f"{baseline['train_rows']:,} rows in {baseline['train_seconds']:.1f} s; parameters are its non-zero "
                  "weights, size its saved files; timed on the CPU from a raw test row of median length "
                  "(its featurisation included), the transformers from token ids.", ""]
    elif baseline:
        lines += [f"Baseline: {baseline['reason']}.", ""]
    if settings["seq_len"]:
        lines.append(f"Sequence length {settings['seq_len']} ({settings['seq_len_from']}).")
    lines.append(
        f"Latency: p50 (and p10–p90) over up to "
        f"{settings['runs']} runs after {settings['warmup']} warm-up at batch 1, throughput at batch "
        f"{settings['throughput_batch']}; the models are timed {settings['order']}, so drift on a shared "
        f"machine falls on all alike (a measurement stops after at least {MIN_RUNS} rounds once it has "
        f"taken {settings['max_seconds']:g} s per model; each latency record keeps its count). "
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
    styles = {"teacher": ("*", "C1"), "baseline": ("s", "C2")}  # both also drawn as a level to beat
    for entry in result["models"]:
        ratios = entry.get(against)
        x = ratios["speedup"].get(device) if ratios else 1.0
        if x is None:  # not timed on this device (the classical baseline on a GPU)
            continue
        farthest = max(farthest, x)
        marker, color = styles.get(entry["role"], ("o", "C0"))
        ax.scatter([x], [entry["score"]], s=60, marker=marker, color=color, zorder=3)
        ax.annotate(entry["name"], (x, entry["score"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if entry["role"] in styles:
            ax.axhline(entry["score"], color=color, linestyle="--", linewidth=0.8, zorder=1)
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
    """evaluation.md, .png and .json (last: its presence means complete), each written whole under a
    staging name, fsynced, then renamed over an earlier evaluation's file."""
    import json
    import os

    from zhkd.outputs import fsync_dir, fsync_file

    out_dir = Path(out_dir)
    staging = out_dir / ".zhkd-staging"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "evaluation.md").write_text(render_markdown(result), encoding="utf-8")
    plot(result, staging / "evaluation.png")
    (staging / "evaluation.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    paths = {}
    for kind in ("md", "png", "json"):
        fsync_file(staging / f"evaluation.{kind}")
        paths[kind] = out_dir / f"evaluation.{kind}"
        os.replace(staging / f"evaluation.{kind}", paths[kind])
    staging.rmdir()
    fsync_dir(out_dir)
    return paths
