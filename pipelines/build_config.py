"""What a build is: every setting that changes the bytes of the dataset, and the hash that names them.

Runner options (workers, region, machine type) are not part of it: the same configuration gives the
same shards whatever runs it. The hash also covers the teacher's weights, its tokenizer and the
augmentation policy, so a rerun is a no-op only when nothing that shapes the data has changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from zhkd.pipelines.errors import PipelineError
from zhkd.rows import Fields
from zhkd.tasks import get_task

# Teacher batches by device. CPU: a few hundred padded tokens keep a layer's activations in the core's
# cache. With the model's own forward, bench/label_bench.py's budget sweep (bert-base, commit 3843999)
# ran 256 to 768 tokens alike and 2,048, the earlier default, about a third slower at 1 and 2 threads,
# the padding growing with the budget; 768 was the largest of the fast ones (fewer batches for small
# teachers). The packed forward (packed_forward.py), which BERT-family teachers run on CPU, spends
# nothing on padding: in its sweep (bench/results/label_bench.json, a small run) 256 to 2,048 ran alike at
# one thread, the build's default, and 2,048 ahead at two, in a single unrepeated pass; 768 stays until
# a full run says otherwise. A GPU wants far larger batches.
BATCH_BUDGETS = {"cpu": (768, 256), "cuda": (65536, 1024)}  # device -> (padded tokens, rows) per batch
DEFAULT_BATCH_TOKENS, DEFAULT_MAX_BATCH_ROWS = BATCH_BUDGETS["cpu"]
DTYPES = {"cpu": "float32", "cuda": "bfloat16"}  # bf16 where a GPU runs it; on CPU it is slower and less exact
DEVICES = ("auto", "cpu", "cuda")
# Teacher batches are formed inside groups of (normalised-text hash % TEACHER_GROUPS, normalised-length
# bin): a function of the data alone, so the batches, hence the logits' last bits, never depend on the
# bucket count, workers or runner; and duplicates meet there. Rows inside a length bin differ by less
# than LENGTH_QUANTUM normalised characters, and batches are cut from them sorted by token length.
DEFAULT_TEACHER_GROUPS = 16
LENGTH_QUANTUM = 8
# Work groups (`--num-buckets`) when none are given: 4 per worker process, at least this many. A running
# setting, not part of the configuration: the bytes never depend on it.
MIN_BUCKETS = 8
INPUT_FORMATS = ("auto", "jsonl", "csv", "tsv", "parquet", "hf")


@dataclass(frozen=True)
class BuildConfig:
    task: str
    inputs: tuple[str, ...]
    output: str
    teacher: str
    input_format: str = "auto"
    split: str = "train"
    fields: Fields = field(default_factory=Fields)
    labels: tuple[str, ...] | None = None
    num_aug: int = 4
    ops: tuple[str, ...] | None = None
    seed: int = 0
    mlm_model: str | None = None
    user_dict: str | None = None
    num_shards: int = 8
    max_chars: int = 512
    truncate: bool = False
    allow_unlabeled: bool = False
    max_length: int | None = None  # teacher tokens; None = the teacher's own limit
    batch_tokens: int | None = None  # None: by device (BATCH_BUDGETS)
    max_batch_rows: int | None = None
    teacher_groups: int = DEFAULT_TEACHER_GROUPS
    device: str = "auto"  # the teacher's (and the mlm operator's); resolved to cpu or cuda before hashing
    teacher_threads: int = 1  # torch threads per worker: the count can change the last bits of logits
    filter_disagreement: bool = False
    min_confidence: float = 0.0

    def __post_init__(self):
        get_task(self.task)  # an unknown task is refused before anything is read
        if self.num_aug < 0:
            raise PipelineError("--num-aug must not be negative")
        for name in ("max_chars", "batch_tokens", "max_batch_rows", "num_shards", "teacher_threads", "teacher_groups"):
            value = getattr(self, name)
            if value is not None and value < 1:  # None: the device's batch budget (resolve_device)
                raise PipelineError(f"--{name.replace('_', '-')} must be at least 1")
        if self.device not in DEVICES:
            raise PipelineError(f"--device {self.device}: one of {', '.join(DEVICES)}")
        if self.max_length is not None and self.max_length < 2:
            raise PipelineError("--max-length must be at least 2 (the special tokens)")
        if self.input_format not in INPUT_FORMATS:
            raise PipelineError(f"--input-format {self.input_format!r}; one of {', '.join(INPUT_FORMATS)}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise PipelineError(f"--min-confidence is a probability, in [0, 1], not {self.min_confidence}")

    def hashed(self) -> dict:
        """The settings that shape the data (the output path does not)."""
        data = asdict(self)
        data.pop("output")
        return data


def resolve_device(config: BuildConfig, cuda_available: bool) -> BuildConfig:
    """The configuration with its device and batch budget settled, as it is hashed and recorded: `auto`
    becomes `cuda` when the driver sees a GPU (name `--device cuda` where only the workers have one)."""
    device = config.device
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    tokens, rows = BATCH_BUDGETS[device]
    return replace(config, device=device, batch_tokens=config.batch_tokens or tokens,
                   max_batch_rows=config.max_batch_rows or rows)


def dtype_for(device: str) -> str:
    return DTYPES["cuda" if device.startswith("cuda") else "cpu"]


def config_hash(settings: dict) -> str:
    """sha256 of the canonical JSON of everything that shapes the data."""
    canonical = json.dumps(settings, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
