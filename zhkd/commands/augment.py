"""`zhkd augment`: stream a JSONL file through a task policy; originals and variants out, bad rows aside."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from zhkd.augment.errors import AugmentError
from zhkd.augment.example import Example, Variant
from zhkd.augment.ids import content_id
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


def rejected_path(output: Path) -> Path:
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".rejected.jsonl")


def to_example(row: object, task: str) -> Example:
    """An Example from a parsed row, or ValueError saying why the row cannot be used."""
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    row_id = row.get("id")
    if row_id is not None and not isinstance(row_id, str | int):
        raise ValueError("id is neither a string nor an integer")
    label = row.get("label")
    if get_task(task).per_token:
        tokens, tags = row.get("tokens"), row.get("tags")
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise ValueError("missing tokens or tags (lists)")
        if not tokens or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("empty tokens, or a token that is not a non-empty string")
        if len(tokens) != len(tags):
            raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
        bad = [t for t in tags if not (t == "O" or isinstance(t, str) and t[:2] in ("B-", "I-") and len(t) > 2)]
        if bad:
            raise ValueError(f"tag {bad[0]!r} is not BIO (O, B-TYPE, I-TYPE)")
        text = "".join(tokens)
        if not text.strip():
            raise ValueError("empty text")
        return Example(str(row_id) if row_id is not None else content_id(row), text, None, label,
                       tuple(tokens), tuple(tags))
    fields = ("text", "text_pair") if get_task(task).has_pair else ("text",)
    for field in fields:
        value = row.get(field)
        if not isinstance(value, str):
            raise ValueError(f"missing {field} (a string)")
        if not value.strip():
            raise ValueError(f"empty {field}")
    return Example(str(row_id) if row_id is not None else content_id(row), row["text"], row.get("text_pair"), label)


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


class Run:
    """Counts and the two output streams of one augment run."""

    def __init__(self, policy, task: str, out, rejected) -> None:
        self.policy, self.task, self.out, self.rejected = policy, task, out, rejected
        self.read = self.bad = self.written = self.augmented = 0

    def reject(self, line_no: int, raw: str, reason: str) -> None:
        self.bad += 1
        self.rejected.write(_dumps({"line": line_no, "reason": reason, "row": raw.rstrip("\n")}))

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
                    self.reject(item[0], item[1], str(err))
            return
        for (_, _, row, _), variants in zip(batch, results, strict=True):
            for variant in variants:
                self.out.write(_dumps(output_row(row, variant, self.task)))
            self.written += len(variants)
            self.augmented += len(variants) - 1


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if not args.input.is_file():
        raise AugmentError(f"input file not found: {args.input}")
    ops = [o for o in args.ops.split(",") if o.strip()] if args.ops else None
    policy = make_policy(args.task, num_aug=args.num_aug, ops=ops, seed=args.seed, mlm_model=args.mlm_model,
                         wordvec=args.wordvec, user_dict=args.user_dict, device=args.device)
    policy.load()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rejected_file = rejected_path(args.output)
    start = time.perf_counter()
    with (open(args.input, encoding="utf-8", errors="replace") as src, open(args.output, "w", encoding="utf-8") as out,
          open(rejected_file, "w", encoding="utf-8") as rejected):
        state = Run(policy, args.task, out, rejected)
        batch: list[tuple[int, str, dict, Example]] = []
        for line_no, raw in enumerate(tqdm(src, desc="augment", unit=" rows", file=sys.stderr, mininterval=1), 1):
            if not raw.strip():
                continue
            state.read += 1
            try:
                row = json.loads(raw)
                batch.append((line_no, raw, row, to_example(row, args.task)))
            except json.JSONDecodeError as err:
                state.reject(line_no, raw, f"bad JSON: {err.msg} at column {err.colno}")
            except ValueError as err:
                state.reject(line_no, raw, str(err))
            if len(batch) >= BATCH_EXAMPLES:
                state.flush(batch)
                batch = []
        if batch:
            state.flush(batch)
    seconds = time.perf_counter() - start
    print(f"augment: {state.read} rows read, {state.bad} rejected ({rejected_file}), {state.written} rows written "
          f"({state.augmented} variants) to {args.output} in {seconds:.1f} s", file=sys.stderr)
    return 0
