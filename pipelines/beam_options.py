"""Beam pipeline options on the `zhkd build` command line, and the runner a local build uses.

Every Beam option (`--runner`, `--project`, `--region`, `--temp_location`, `--direct_num_workers`, ...)
is accepted as is. Locally, `DirectRunner` in Beam 2.77 first tries the Prism runner, which downloads
a Go binary; zhkd asks for `FnApiRunner` instead, which is the engine DirectRunner falls back to for
batch pipelines, and supports `--direct_running_mode` in_memory / multi_threading / multi_processing.
`--runner DaskRunner` (or `dask`) names Beam's DaskRunner, which Beam only knows by its module path.
"""

from __future__ import annotations

import argparse
import contextlib
import logging

_DEST_PREFIX = "beam_option__"
_LOCAL_ENGINE = "FnApiRunner"
_DIRECT_ALIASES = {"", "direct", "directrunner", "switchingdirectrunner"}
_LOCAL_RUNNERS = {"fnapirunner", "bundlebaseddirectrunner", "prismrunner", "testdirectrunner"}
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
_DASK_ALIASES = {"dask", "daskrunner", DASK_RUNNER.lower()}


def _option_classes():
    from apache_beam.options.pipeline_options import PipelineOptions

    with contextlib.suppress(ImportError):  # registers DaskOptions (--dask_client_address, ...) with the dask extra
        import apache_beam.runners.dask.dask_runner  # noqa: F401

    found, todo = [], list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in found:
            found.append(cls)
            todo += cls.__subclasses__()
    return found


def add_beam_arguments(parser: argparse.ArgumentParser) -> None:
    """Register Beam's options (hidden from --help) without shadowing any of the command's own."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    beam_parser = _BeamArgumentParser(add_help=False)
    for cls in _option_classes():
        cls._add_argparse_args(beam_parser)
    taken = set(parser._option_string_actions)
    for action in beam_parser._actions:
        if not action.option_strings or taken & set(action.option_strings):
            continue
        action.help = argparse.SUPPRESS
        action.default = None
        # Keyed by the flag's own name (Beam's dest can differ: --dask_client_address is `address`),
        # since the flags are handed back to Beam as `--name=value`.
        action.dest = _DEST_PREFIX + action.option_strings[-1].lstrip("-")
        parser._add_action(action)
        taken |= set(action.option_strings)


def beam_flags(args: argparse.Namespace) -> dict:
    """The Beam options the user set, by Beam's own names."""
    return {k[len(_DEST_PREFIX):]: v for k, v in vars(args).items() if k.startswith(_DEST_PREFIX) and v is not None}


def make_options(flags: dict):
    """PipelineOptions for the given Beam flags; DirectRunner (or no runner) becomes the local engine,
    DaskRunner Beam's module path for it."""
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = dict(flags)
    runner = str(flags.get("runner") or "").lower()
    if runner in _DIRECT_ALIASES:
        flags["runner"] = _LOCAL_ENGINE
        flags.setdefault("direct_running_mode", "in_memory")
    elif runner in _DASK_ALIASES:
        flags["runner"] = DASK_RUNNER
    return PipelineOptions.from_dictionary(flags)


def is_dask(flags: dict) -> bool:
    return str(flags.get("runner") or "").lower() in _DASK_ALIASES


def names_dask_cluster(flags: dict) -> bool:
    """Whether the flags name a running Dask cluster (else zhkd starts a local one)."""
    return bool(flags.get("dask_client_address") or flags.get("dask_scheduler_file"))


def runner_name(options) -> str:
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) else type(runner).__name__


def is_local(options) -> bool:
    return runner_name(options).lower() in _LOCAL_RUNNERS | _DIRECT_ALIASES


def shares_cores(options, local_workers: int = 0) -> bool:
    """True for a local run whose several worker processes share this machine's cores (a local Dask
    cluster of `local_workers` processes, or the local engine in multi_processing mode)."""
    from apache_beam.options.pipeline_options import DirectOptions

    if local_workers:
        return local_workers > 1
    direct = options.view_as(DirectOptions)
    workers = direct.direct_num_workers or 2  # Beam reads 0 as "one per core"
    return is_local(options) and direct.direct_running_mode == "multi_processing" and workers > 1


def is_dry_run(options) -> bool:
    from apache_beam.options.pipeline_options import TestOptions

    return bool(options.view_as(TestOptions).dry_run)


_KNOWN_NOISE = (
    "apitools not found",  # BigQuery module imported without the gcp extra; zhkd never uses BigQuery
    "Resource module is not available",  # RunInference's memory probe: Beam 2.77 ties it to scipy
)


class _KnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _KNOWN_NOISE)


def quiet_known_warnings() -> None:
    """Drop two harmless Beam warnings that would otherwise appear on every build (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(f, _KnownNoise) for f in root.filters):
        root.addFilter(_KnownNoise())
