"""Per-example randomness: every random choice comes from (seed, example id, operator chain, k)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def derive_rng(seed: int, example_id: str, chain: Sequence[str], k: int) -> random.Random:
    """A private generator, independent of the global `random` state, of process and of PYTHONHASHSEED."""
    key = "\x1f".join((str(seed), example_id, "\x1e".join(chain), str(k))).encode("utf-8")
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "big"))
