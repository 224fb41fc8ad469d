"""`zhkd validate DIR`: COMPLETED, manifest, every shard's size, checksum, schema and row count."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="a dataset directory written by zhkd build")
    parser.add_argument("--no-checksums", action="store_true", help="skip the sha256 of each shard (faster)")


def run(args: argparse.Namespace) -> int:
    from zhkd.shards import validate

    manifest = validate(args.directory, check_checksums=not args.no_checksums)
    shards = manifest["shards"]
    size = sum(s["bytes"] for s in shards)
    print(f"{args.directory}: valid zhkd dataset (format v{manifest['format_version']}, task {manifest['task']}, "
          f"{manifest['total_rows']:,} rows in {len(shards)} shards, {size / 1e6:.1f} MB"
          f"{', checksums verified' if not args.no_checksums else ''})")
    return 0
