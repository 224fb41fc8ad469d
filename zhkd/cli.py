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
from collections.abc import Callable

COMMANDS = {
    "corpora": ("zhkd.commands.corpora", "rebuild or check the bundled corpora"),
    "augment": ("zhkd.commands.augment", "augment a JSONL file with a task policy"),
    "build": ("zhkd.commands.build", "build a soft-label dataset with Beam"),
    "validate": ("zhkd.commands.validate", "check a dataset directory"),
    "evaluate": ("zhkd.commands.evaluate", "score models by task type, with speed and size"),
    "pretrain": ("zhkd.commands.pretrain", "pre-train a small character MLM from text"),
    "demo": ("zhkd.demo", "the paper in miniature: teacher, datasets, students and the report"),
    "finetune": ("zhkd.commands.finetune", "fine-tune a teacher or student on gold labels"),
    "distill": ("zhkd.commands.distill", "distil a student from a soft-label dataset"),
    "select-teacher": ("zhkd.commands.select_teacher", "choose the teacher among candidates by dev score, and say why"),
}


def user_error_types() -> tuple[type[BaseException], ...]:
    from zhkd.errors import ZhkdError

    return (ZhkdError, FileNotFoundError)


def reporting_errors(prog: str, action: Callable[[], int | None]) -> int:
    """`action()`'s exit status; a user's mistake is one line, `PROG: error: ...`, and exit status 2. The
    one home of that rule for the `zhkd` command and the package's `python -m` tools."""
    try:
        return action() or 0
    except user_error_types() as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


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
        return reporting_errors(f"zhkd {args.command}", lambda: importlib.import_module(args.module).run(args))
    except KeyboardInterrupt:
        print(f"zhkd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
