"""`zhkd augment`: stream a JSONL file through a task policy; originals and variants out, bad rows aside.

Rows are read and checked by `zhkd.rows` (as `zhkd build` reads them): a rejected row goes to
`OUT.rejected.jsonl` with its line, reason code and detail. Both outputs are written under partial
names and renamed in when the run is complete; the input is never among them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from zhkd.augment.errors import AugmentError
from zhkd.augment.example import Example, Variant
from zhkd.augment.policy import make_policy
from zhkd.tasks import get_task, task_names

BATCH_EXAMPLES = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--input", required=True, type=Path, help="JSONL rows as in the bundled corpora")
    parser.add_argument("--output", required=True, type=Path, help="JSONL: each original, then its variants")
    parser.add_argument("--num-aug", type=int, default=4, help="variants per example, at most (default 4)")
    parser.add_argument("--ops", help="comma-separated operators (default: the task's recipe), e.g. synonym,eda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mlm-model", help="masked-LM checkpoint (directory or hub id) for the mlm operator")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the mlm operator runs (default auto: CUDA when present)")
    parser.add_argument("--wordvec", help="word2vec text file for the wordvec operator")
    parser.add_argument("--user-dict", help="jieba user dictionary (word [freq] [tag] per line)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier augment output at --output (only once the new one is complete)")


def rejected_path(output: Path) -> Path:
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".rejected.jsonl")


def output_row(row: dict, variant: Variant, task: str) -> dict:
    out = dict(row)
    out["id"] = variant.id
    if get_task(task).per_token:
        out["tokens"], out["tags"] = list(variant.tokens), list(variant.tags)
    else:
        out["text"] = variant.text
        if get_task(task).has_pair:
            out["text_pair"] = variant.text_pair
    out.update(source_id=variant.source_id, ops=list(variant.ops), is_original=variant.is_original)
    return out


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def is_augment_output(path: Path) -> bool:
    """Whether a file is one `zhkd augment` wrote (its first row has the fields augment adds), so that
    --overwrite may replace it. An empty file holds nothing to lose."""
    from zhkd.rows import lines

    with open(path, "rb") as f:
        for _, raw, too_long in lines(f):
            if too_long:
                return False
            if raw.strip():
                try:
                    row = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    return False
                return isinstance(row, dict) and ({"source_id", "ops", "is_original"} <= set(row)
                                                  or {"line", "reason", "row"} <= set(row))
    return True


class Run:
    """Counts and the two output streams of one augment run."""

    def __init__(self, policy, task: str, out, rejected) -> None:
        self.policy, self.task, self.out, self.rejected = policy, task, out, rejected
        self.read = self.bad = self.written = self.augmented = 0

    def reject(self, line_no: int, raw: str, reason: str, detail: str = "") -> None:
        self.bad += 1
        self.rejected.write(_dumps({"line": line_no, "reason": reason, "detail": detail, "row": raw}))

    def flush(self, batch: list[tuple[int, str, dict, Example]]) -> None:
        try:
            results = self.policy.variants_batch([e for *_, e in batch])
        except AugmentError:
            if len(batch) == 1:
                raise
            results = None
        if results is None:   # isolate the row that failed
            for item in batch:
                try:
                    self.flush([item])
                except AugmentError as err:
                    self.reject(item[0], item[1], "augment_failed", str(err))
            return
        for (_, _, row, _), variants in zip(batch, results, strict=True):
            for variant in variants:
                self.out.write(_dumps(output_row(row, variant, self.task)))
            self.written += len(variants)
            self.augmented += len(variants) - 1


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from zhkd.outputs import replacing_files
    from zhkd.rows import BLANK, Fields, Validator, read_file

    records = read_file(args.input, "jsonl")
    first = next(records)  # a missing or empty input is refused here, before anything else
    ops = [o for o in args.ops.split(",") if o.strip()] if args.ops else None
    policy = make_policy(args.task, num_aug=args.num_aug, ops=ops, seed=args.seed, mlm_model=args.mlm_model,
                         wordvec=args.wordvec, user_dict=args.user_dict, device=args.device)
    rejected_file = rejected_path(args.output)
    outputs = replacing_files([args.output, rejected_file], inputs=[args.input, args.wordvec, args.user_dict],
                              overwrite=args.overwrite, ours=is_augment_output, command="augment")
    # Labels pass through as given (augment knows no label set); token tasks need their tags for spans.
    validator = Validator(args.task, Fields(), None, max_chars=None,
                          allow_unlabeled=not get_task(args.task).per_token)
    start = time.perf_counter()
    with outputs as (out, rejected):
        policy.load()
        state = Run(policy, args.task, out, rejected)
        batch: list[tuple[int, str, dict, Example]] = []
        progress = tqdm(desc="augment", unit=" rows", file=sys.stderr, mininterval=1)
        for record in itertools.chain([first], records):
            progress.update()
            if record.error == BLANK:
                continue
            state.read += 1
            checked = validator.check(record)
            if checked.dead is not None:
                state.reject(record.position, record.raw, checked.dead.reason, checked.dead.detail)
                continue
            batch.append((record.position, record.raw, record.fields, checked.example))
            if len(batch) >= BATCH_EXAMPLES:
                state.flush(batch)
                batch = []
        if batch:
            state.flush(batch)
        progress.close()
    seconds = time.perf_counter() - start
    print(f"augment: {state.read} rows read, {state.bad} rejected ({rejected_file}), {state.written} rows written "
          f"({state.augmented} variants) to {args.output} in {seconds:.1f} s", file=sys.stderr)
    return 0
