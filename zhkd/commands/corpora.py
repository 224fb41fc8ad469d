"""`zhkd corpora`: rebuild the bundled corpora from their source packages, or check them."""

from __future__ import annotations

import argparse
import hashlib
import json

from zhkd.pipelines.corpora import CORPORA, build_all, corpus_stats
from zhkd.pipelines.errors import PipelineError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build", "check", "stats"],
                        help="build: rewrite the bundled files; check: compare a fresh build with them; "
                             "stats: print the figures the data cards state")


def run(args: argparse.Namespace) -> int:
    if args.action == "stats":
        print(json.dumps({n: corpus_stats(n) for n in CORPORA}, ensure_ascii=False, indent=1))
        return 0
    fresh = build_all()
    stale = []
    for path, data in fresh.items():
        digest = hashlib.sha256(data).hexdigest()[:16]
        if args.action == "build":
            path.write_bytes(data)
            print(f"wrote {path.name:32s} {len(data):>9,d} bytes  sha256 {digest}")
        elif not path.exists() or path.read_bytes() != data:
            stale.append(path.name)
    if stale:
        raise PipelineError(f"bundled files differ from a fresh build: {', '.join(stale)}")
    if args.action == "check":
        print(f"all {len(fresh)} bundled files match a fresh build")
    return 0
