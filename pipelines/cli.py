"""The `zhkd` entry point: one subcommand per module, each with `add_arguments` and `run`.

Modules are imported only for the subcommand that runs (and for `--help`), so `zhkd --version`
stays instant. A user's mistake surfaces as `zhkd <command>: error: ...` and exit 2, never a
traceback; the error types below are the ones that carry such mistakes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

COMMANDS = {
    "corpora": ("pipelines.corpora_cli", "rebuild or check the bundled corpora"),
    "augment": ("augment.cli", "augment a JSONL file with a task policy"),
    "build": ("pipelines.build_cli", "build a soft-label dataset with Beam"),
    "validate": ("pipelines.validate_cli", "check a dataset directory"),
    "evaluate": ("distill.evaluate_cli", "score models by task type, with speed and size"),
    "pretrain": ("distill.pretrain_cli", "pre-train a small character MLM from text"),
    "demo": ("pipelines.demo", "the paper in miniature: teacher, datasets, students and the report"),
    "finetune": ("distill.finetune_cli", "fine-tune a teacher or student on gold labels"),
    "distill": ("distill.distill_cli", "distil a student from a soft-label dataset"),
}


def user_error_types() -> tuple[type[BaseException], ...]:
    from augment.errors import AugmentError
    from distill.errors import DistillError
    from pipelines.errors import PipelineError

    return (AugmentError, DistillError, PipelineError, FileNotFoundError)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; only the selected subcommand's module is imported to add its options."""
    parser = argparse.ArgumentParser(
        prog="zhkd", description="Soft-label datasets for Chinese knowledge distillation, and students."
    )
    parser.add_argument("--version", action="version", version=f"zhkd {importlib.metadata.version('zhkd')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        command = sub.add_parser(name, help=summary, description=summary)
        command.set_defaults(module=module)
        if name == selected:
            importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return importlib.import_module(args.module).run(args) or 0
    except user_error_types() as err:
        print(f"zhkd {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zhkd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
