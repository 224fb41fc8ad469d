"""What a build is: every setting that changes the bytes of the dataset, and the hash that names them.

Runner options (workers, region, machine type) are not part of it: the same configuration gives the
same shards whatever runs it. The hash also covers the teacher's weights, its tokenizer and the
augmentation policy, so a rerun is a no-op only when nothing that shapes the data has changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from zhkd.rows import Fields

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

    def hashed(self) -> dict:
        """The settings that shape the data (the output path does not)."""
        data = asdict(self)
        data.pop("output")
        return data


def config_hash(settings: dict) -> str:
    """sha256 of the canonical JSON of everything that shapes the data."""
    canonical = json.dumps(settings, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
