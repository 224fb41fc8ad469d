"""The teacher: Hugging Face sequence/token classifiers labelling rows through Beam's RunInference.

Rows are tokenised once (the ids are stored, so the trainer never re-tokenises), then formed into
batches deterministically: sorted by (token length, id) inside a group and cut by a token budget.
That makes batches length-homogeneous (little padding) and, as important, makes each batch's
membership a function of the data alone. On CPU a row's logits differ in the last bits with the
batch it shares (BLAS blocking depends on the matrix shape), so batches formed by Beam's adaptive,
timing-driven BatchElements would make the stored bytes depend on how the runner bundled elements.
The formed batches go through RunInference with a keyed handler and batching switched off.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from zhkd.pipelines.errors import PipelineError
from zhkd.pipelines.packed_forward import PackedForward, forward_path
from zhkd.pipelines.wire import TeacherRow, unpack_ints
from zhkd.tasks import get_task

_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


@functools.lru_cache(maxsize=4)
def resolve_checkpoint(name: str) -> str:
    """A local directory for the checkpoint: remote ones (gs://...) are copied once per process."""
    if not _is_remote(name):
        return name
    from apache_beam.io.filesystems import FileSystems

    base = name.rstrip("/")
    files = [m.path for m in FileSystems.match([base + "/*"])[0].metadata_list]
    if not files:
        raise PipelineError(f"{name}: no checkpoint files there")
    local = tempfile.mkdtemp(prefix="zhkd-teacher-")
    for path in files:
        with FileSystems.open(path) as src, open(os.path.join(local, path.rsplit("/", 1)[1]), "wb") as dst:
            while block := src.read(1 << 24):
                dst.write(block)
    return local


@dataclass(frozen=True)
class TeacherInfo:
    """What the driver learns about the teacher before the run (all of it recorded in the manifest)."""

    name: str
    kind: str
    num_labels: int
    label_names: tuple[str, ...] | None  # None when the checkpoint only has LABEL_0, LABEL_1, ...
    max_length: int
    pad_token_id: int
    weights_sha256: str
    tokenizer_sha256: str


def inspect_teacher(name: str, task: str) -> TeacherInfo:
    from transformers import AutoConfig

    from zhkd.models import head_mismatch, hub_reference, load_tokenizer, tokenizer_fingerprint, weights_fingerprint

    local = resolve_checkpoint(name)
    repo, revision = hub_reference(local)
    try:
        config = AutoConfig.from_pretrained(repo, trust_remote_code=False, **revision)
    except (OSError, ValueError) as err:
        raise PipelineError(f"cannot read the teacher's config from {name}: {err}") from err
    kind = get_task(task).model_kind
    mismatch = head_mismatch(config, task)
    if mismatch:
        raise PipelineError(f"teacher {name} {mismatch}")
    tokenizer = load_tokenizer(local)
    if get_task(task).per_token and not tokenizer.is_fast:
        raise PipelineError(f"the tokenizer of {name} is not a fast tokenizer; ner alignment needs word ids")
    names = tuple(config.id2label[i] for i in range(config.num_labels))
    limit = getattr(config, "max_position_embeddings", None) or 512
    return TeacherInfo(
        name=name, kind=kind, num_labels=config.num_labels,
        label_names=None if all(_GENERIC_LABEL.match(n) for n in names) else names,
        max_length=min(limit, tokenizer.model_max_length), pad_token_id=tokenizer.pad_token_id or 0,
        weights_sha256=weights_fingerprint(local), tokenizer_sha256=tokenizer_fingerprint(tokenizer),
    )


class Encoding(NamedTuple):
    """A row's teacher inputs, and whether they were cut to the teacher's limit."""

    input_ids: list[int]
    token_type_ids: list[int] | None  # None when the tokenizer gives none
    token_starts: list[int] | None  # NER: each word's first piece, -1 where it has none
    truncated: bool


class TeacherTokenizer:
    """Teacher inputs for rows (anything with `text`, `text_pair` and `tokens`: a `Variant`)."""

    def __init__(self, checkpoint: str, task: str, max_length: int) -> None:
        from zhkd.models import load_tokenizer

        self.task, self.max_length = task, max_length
        self.tokenizer = load_tokenizer(resolve_checkpoint(checkpoint))

    def _encode(self, rows: Sequence, truncate: bool):
        options = {"truncation": truncate, "max_length": self.max_length if truncate else None, "verbose": False,
                   "return_attention_mask": False}
        if get_task(self.task).per_token:
            return self.tokenizer([list(r.tokens) for r in rows], is_split_into_words=True, **options)
        pairs = [r.text_pair for r in rows] if get_task(self.task).has_pair else None
        return self.tokenizer([r.text for r in rows], pairs, **options)

    def encode(self, rows: Sequence) -> list[Encoding]:
        if not rows:
            return []
        encoded = [self._encode(rows, truncate=False)]
        too_long = [i for i, ids in enumerate(encoded[0]["input_ids"]) if len(ids) > self.max_length]
        if too_long:
            encoded.append(self._encode([rows[i] for i in too_long], truncate=True))
        where = {i: (0, i) for i in range(len(rows))} | {i: (1, j) for j, i in enumerate(too_long)}
        per_token = get_task(self.task).per_token
        out = []
        for i, row in enumerate(rows):
            part, j = where[i]
            enc = encoded[part]
            starts = None
            if per_token:
                starts = [-1] * len(row.tokens)
                for position, word in enumerate(enc.word_ids(j)):
                    if word is not None and starts[word] < 0:
                        starts[word] = position
            out.append(Encoding(enc["input_ids"][j], enc["token_type_ids"][j] if "token_type_ids" in enc else None,
                                starts, part == 1))
        return out


def plan_batches(rows: list[TeacherRow], *, batch_tokens: int, max_rows: int) -> list[list[TeacherRow]]:
    """Rows sorted by (length, id), cut so that rows x longest length stays within the token budget."""
    ordered = sorted(rows, key=lambda r: (r.length, r.id))
    batches: list[list[TeacherRow]] = []
    current: list[TeacherRow] = []
    for row in ordered:
        if current and ((len(current) + 1) * row.length > batch_tokens or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(row)
    if current:
        batches.append(current)
    return batches


@dataclass
class LoadedTeacher:
    model: object
    device: str
    dtype: str  # what actually ran, recorded in the manifest
    forward: str = "plain"  # which forward runs the batches (plain, or PackedForward.name), recorded likewise
    packed: object = None  # the PackedForward when `forward` is "packed"


# The process's loaded teachers. Beam's shared handle holds a model only while a DoFn refers to it;
# runners that set a DoFn up per bundle (Beam's DaskRunner: per partition) would reload it each time.
_LOADED: dict[tuple, LoadedTeacher] = {}


class TeacherHandler(ModelHandler):
    """RunInference handler for a Hugging Face classifier; one model per worker process by default
    (Beam's shared handle), or `copies` models shared by all processes of a machine (large models)."""

    def __init__(self, checkpoint: str, task: str, *, pad_token_id: int, device: str = "auto",
                 copies: int | None = None, threads: int | None = None, fingerprint: str = "",
                 forward: str = "auto") -> None:
        super().__init__(model_copies=copies)
        self.checkpoint, self.task, self.pad_token_id, self.device = checkpoint, task, pad_token_id, device
        # "auto": the packed forward where it runs (packed_forward.forward_path), else the plain one;
        # "plain": the model's own forward always (the bench's reference).
        if forward not in ("auto", "plain"):
            raise PipelineError(f"teacher forward {forward!r}: auto or plain")
        self.forward = forward
        # The weights' sha256: a long-lived worker (a Dask cluster serving several builds) reloads a
        # checkpoint directory whose weights changed.
        self.fingerprint = fingerprint
        # torch threads per worker process (None: torch's default). The count is fixed by the
        # configuration, not by the runner: on long rows it changes the last bits of the logits.
        self.threads = threads

    def load_model(self) -> LoadedTeacher:
        """One model per process and (checkpoint, weights, task, device, forward), loaded once; the configured
        thread count is set on every call (something else in the process may have changed it since)."""
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        key = (self.checkpoint, self.fingerprint, self.task, self.device, self.forward)
        if key not in _LOADED:
            _LOADED[key] = self._load()
        return _LOADED[key]

    def _load(self) -> LoadedTeacher:
        import torch
        import transformers

        from zhkd.models import load_model
        from zhkd.pipelines.build_config import dtype_for

        transformers.utils.logging.disable_progress_bar()
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise PipelineError(f"the teacher is to run on {device}, but this worker's torch sees no CUDA device")
            if device == "cuda" and torch.cuda.device_count() > 1:
                # One model per worker process, the processes spread over the GPUs by process id (set
                # CUDA_VISIBLE_DEVICES per worker for an exact placement).
                device = f"cuda:{os.getpid() % torch.cuda.device_count()}"
        dtype = dtype_for(device)
        model = load_model(get_task(self.task).model_kind, resolve_checkpoint(self.checkpoint),
                           dtype=getattr(torch, dtype)).to(device).eval()
        packed = PackedForward(model) if self.forward == "auto" and forward_path(model, device) == "packed" else None
        return LoadedTeacher(model, device, dtype, packed.name if packed else "plain", packed)

    def run_inference(self, batch: Sequence[TeacherRow], model: LoadedTeacher, inference_args=None):
        import torch

        if not batch:
            return []
        ids_of = [unpack_ints(r.input_ids) for r in batch]
        lengths = [len(ids) for ids in ids_of]
        width = max(lengths)
        ids = np.full((len(batch), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        for i, row in enumerate(batch):
            ids[i, : lengths[i]] = ids_of[i]
            mask[i, : lengths[i]] = 1
            if row.token_type_ids:  # b"": all 0 (`pack_segments`), as `types` already holds
                types[i, : lengths[i]] = unpack_ints(row.token_type_ids)
        inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if any(row.token_type_ids is not None for row in batch):
            inputs["token_type_ids"] = torch.from_numpy(types)
        on_gpu = model.device.startswith("cuda")
        if on_gpu:  # pinned host memory: the copies to the GPU do not block the host
            inputs = {k: v.pin_memory() for k, v in inputs.items()}
        with torch.inference_mode():
            inputs = {k: v.to(model.device, non_blocking=on_gpu) for k, v in inputs.items()}
            logits = model.packed(**inputs) if model.packed is not None else model.model(**inputs).logits
            logits = logits.float().cpu().numpy()  # the one host sync per batch: its results are needed
        if not get_task(self.task).per_token:
            return [PredictionResult(row, logits[i]) for i, row in enumerate(batch)]
        results = []
        for i, row in enumerate(batch):
            starts = unpack_ints(row.token_starts)
            per_token = np.zeros((len(starts), logits.shape[-1]), dtype=np.float32)
            present = starts >= 0
            per_token[present] = logits[i, starts[present]]
            results.append(PredictionResult(row, per_token))
        return results

    def get_num_bytes(self, batch: Sequence[TeacherRow]) -> int:
        return sum(4 * r.length for r in batch)

    def get_metrics_namespace(self) -> str:
        return "zhkd_teacher"
