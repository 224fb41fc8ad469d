"""What a build is: every setting that changes the bytes of the dataset, and the hash that names them.

Runner options (workers, region, machine type) are not part of it: the same configuration gives the
same shards whatever runs it. The hash also covers the teacher's weights, its tokenizer and the
augmentation policy, so a rerun is a no-op only when nothing that shapes the data has changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from zhkd.pipelines.errors import PipelineError
from zhkd.rows import Fields
from zhkd.tasks import get_task

# Teacher batches on CPU: 2,048 padded tokens keep activations in cache (bert-base here: 12.1 rows/s at
# 2,048, 9.3 at 8,192, 12.7 at 512); a GPU wants far more (e.g. --batch-tokens 65536).
DEFAULT_BATCH_TOKENS = 2048
DEFAULT_MAX_BATCH_ROWS = 256
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
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    teacher_threads: int = 1  # torch threads per worker: the count can change the last bits of logits
    filter_disagreement: bool = False
    min_confidence: float = 0.0

    def __post_init__(self):
        get_task(self.task)  # an unknown task is refused before anything is read
        if self.num_aug < 0:
            raise PipelineError("--num-aug must not be negative")
        for name in ("max_chars", "batch_tokens", "max_batch_rows", "num_shards", "teacher_threads"):
            if getattr(self, name) < 1:
                raise PipelineError(f"--{name.replace('_', '-')} must be at least 1")
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


def config_hash(settings: dict) -> str:
    """sha256 of the canonical JSON of everything that shapes the data."""
    canonical = json.dumps(settings, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
