"""`zhkd build`: a soft-label dataset from task data, a teacher and the augmentation policy, with Beam."""

from __future__ import annotations

import argparse

from zhkd.pipelines.build_config import (
    BATCH_BUDGETS,
    DEFAULT_TEACHER_GROUPS,
    DEVICES,
    INPUT_FORMATS,
    MIN_BUCKETS,
    BuildConfig,
)
from zhkd.rows import Fields
from zhkd.tasks import task_names


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from zhkd.pipelines.beam_options import add_beam_arguments, quiet_known_warnings

    quiet_known_warnings()
    parser.epilog = ("Any Apache Beam pipeline option is accepted too (e.g. --runner DataflowRunner --project P "
                     "--region R --temp_location gs://... --setup_file ./pyproject.toml, or "
                     "--direct_num_workers 2 --direct_running_mode multi_processing locally, or --runner DaskRunner "
                     "[--dask_client_address HOST:PORT] for Dask). "
                     "See docs/build.md.")
    io = parser.add_argument_group("input and output")
    io.add_argument("--task", required=True, choices=task_names())
    io.add_argument("--input", required=True, action="append", metavar="IN",
                    help="JSONL/CSV/TSV/Parquet file or glob (local or gs://...), a save_to_disk dataset "
                         "directory, or hf:NAME for a hub dataset; repeatable")
    io.add_argument("--input-format", default="auto", choices=INPUT_FORMATS)
    io.add_argument("--split", default="train", help="split of a Hugging Face dataset (default train)")
    io.add_argument("--output", required=True, metavar="DIR", help="dataset directory (local or gs://...)")
    io.add_argument("--overwrite", action="store_true", help="replace a dataset built with another configuration")
    fields = parser.add_argument_group("field mapping")
    for name in ("text", "text_pair", "label", "labels", "tokens", "tags", "id"):
        fields.add_argument(f"--{name.replace('_', '-')}-field", default=name, metavar="NAME",
                            help=f"input field holding the {name} (default {name})")
    fields.add_argument("--labels", type=_csv, help="label names in the teacher's order, comma-separated "
                                                    "(default: the teacher's, else inferred from the data)")
    fields.add_argument("--allow-unlabeled", action="store_true",
                        help="keep rows without a label (null gold label) instead of dead-lettering them")
    fields.add_argument("--max-chars", type=int, default=512, help="text length cap in characters (default 512)")
    fields.add_argument("--truncate", action="store_true", help="cut text over the cap instead of rejecting it")
    aug = parser.add_argument_group("augmentation")
    aug.add_argument("--num-aug", type=int, default=4, help="variants per example (default 4)")
    aug.add_argument("--ops", type=_csv, help="restrict the task policy to these operators, comma-separated")
    aug.add_argument("--seed", type=int, default=0)
    aug.add_argument("--mlm-model", help="masked-LM checkpoint for the mlm operator")
    aug.add_argument("--user-dict", help="jieba user dictionary")
    teach = parser.add_argument_group("teacher")
    teach.add_argument("--teacher", required=True, metavar="M",
                       help="sequence- or token-classification checkpoint: local dir, gs://..., or hub id")
    teach.add_argument("--max-length", type=int, help="teacher tokens per row (default: the teacher's limit)")
    cpu, gpu = BATCH_BUDGETS["cpu"], BATCH_BUDGETS["cuda"]
    teach.add_argument("--batch-tokens", type=int,
                       help=f"padded tokens per teacher batch (default by device: {cpu[0]} on CPU, {gpu[0]} on CUDA)")
    teach.add_argument("--max-batch-rows", type=int,
                       help=f"rows per teacher batch at most (default by device: {cpu[1]} on CPU, {gpu[1]} on CUDA)")
    teach.add_argument("--teacher-groups", type=int, default=DEFAULT_TEACHER_GROUPS,
                       help="teacher batches form inside (text hash, length) groups; this many text hashes "
                            f"(default {DEFAULT_TEACHER_GROUPS}; part of the configuration: it decides the batches)")
    teach.add_argument("--teacher-threads", type=int, default=1,
                       help="torch threads per worker process on CPU (default 1; part of the configuration, "
                            "since the thread count can change the last bits of logits); scale out with workers")
    teach.add_argument("--device", default="auto", choices=DEVICES,
                       help="where the teacher and the mlm operator run: auto (CUDA when the machine that "
                            "starts the build has it), cpu or cuda; recorded and part of the configuration")
    teach.add_argument("--teacher-copies", type=int,
                       help="share this many model copies among a machine's worker processes (large teachers)")
    filt = parser.add_argument_group("label-preservation filter (off by default)")
    filt.add_argument("--filter-disagreement", action="store_true",
                      help="drop augmented rows whose teacher prediction differs from the gold label")
    filt.add_argument("--min-confidence", type=float, default=0.0,
                      help="drop augmented rows whose teacher confidence is below this")
    parser.add_argument("--num-shards", type=int, default=8, help="output shards (default 8)")
    run = parser.add_argument_group("running (never changes the output)")
    run.add_argument("--num-buckets", type=int,
                     help="work groups for augmentation, deduplication and shard runs (default: 4 per worker "
                          f"process, 32 per worker of a local Dask cluster; at least {MIN_BUCKETS})")
    run.add_argument("--dask-workers", type=int,
                     help="with --runner DaskRunner and no --dask_client_address: worker processes of the "
                          "local Dask cluster zhkd starts (default: one per core)")
    add_beam_arguments(parser)


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    fields = Fields(text=args.text_field, text_pair=args.text_pair_field, label=args.label_field,
                    labels=args.labels_field, tokens=args.tokens_field, tags=args.tags_field, id=args.id_field)
    return BuildConfig(
        task=args.task, inputs=tuple(args.input), output=args.output, teacher=args.teacher,
        input_format=args.input_format, split=args.split, fields=fields, labels=args.labels,
        num_aug=args.num_aug, ops=args.ops, seed=args.seed, mlm_model=args.mlm_model, user_dict=args.user_dict,
        num_shards=args.num_shards, max_chars=args.max_chars, truncate=args.truncate,
        allow_unlabeled=args.allow_unlabeled, max_length=args.max_length, batch_tokens=args.batch_tokens,
        max_batch_rows=args.max_batch_rows, teacher_threads=args.teacher_threads,
        teacher_groups=args.teacher_groups, device=args.device,
        filter_disagreement=args.filter_disagreement,
        min_confidence=args.min_confidence,
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from zhkd.pipelines.beam_options import beam_flags
    from zhkd.pipelines.build import build
    build(config_from_args(args), beam_flags(args), overwrite=args.overwrite, teacher_copies=args.teacher_copies,
          num_buckets=args.num_buckets, dask_workers=args.dask_workers,
          log=lambda line: print(line, file=sys.stderr, flush=True))
    return 0
