"""Resumable checkpoints, one layout for `zhkd pretrain` and the trainer: written whole, then renamed in.

    OUT/checkpoints/
      000007/            a complete checkpoint: its files, and `state.json` (written last)
      000008.partial/    one being written: never read, removed when the next one begins

A checkpoint is written under a `.partial` name, every file fsynced, `state.json` last; one rename then
makes it complete, and only after that is the older one removed. So at every moment the newest complete
checkpoint is whole on disk: a crash while writing leaves the previous one (and a partial the next
writer clears), a crash after the rename leaves two complete ones, and `latest()` takes the newest.
The run's own files (summary, log, final weights) live beside this folder; `clear()` removes it when the
run is complete. Only the process of rank 0 begins and commits; every rank may add its own files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from zhkd.outputs import fsync_dir, fsync_file

DIR = "checkpoints"
STATE = "state.json"
_PARTIAL = ".partial"


class Checkpoints:
    """The numbered checkpoints of one run directory."""

    def __init__(self, out_dir: str | Path) -> None:
        self.root = Path(out_dir) / DIR

    def _numbered(self) -> list[tuple[int, Path, bool]]:
        """(number, path, complete) of every checkpoint directory, oldest first."""
        found = []
        if self.root.is_dir():
            for entry in self.root.iterdir():
                name, partial = entry.name.removesuffix(_PARTIAL), entry.name.endswith(_PARTIAL)
                if entry.is_dir() and name.isdigit():
                    found.append((int(name), entry, not partial and (entry / STATE).is_file()))
        return sorted(found)

    def latest(self) -> tuple[Path, dict] | None:
        """The newest complete checkpoint and its state, or None when there is none."""
        for _, path, complete in reversed(self._numbered()):
            if complete:
                try:
                    return path, json.loads((path / STATE).read_text("utf-8"))
                except (OSError, ValueError):
                    continue  # unreadable: an older one serves
        return None

    def begin(self) -> Path:
        """A fresh partial directory for the next checkpoint (stale partials of a crashed writer go first)."""
        numbered = self._numbered()
        for _, path, complete in numbered:
            if not complete:
                shutil.rmtree(path)
        number = numbered[-1][0] + 1 if numbered else 1
        partial = self.root / f"{number:06d}{_PARTIAL}"
        partial.mkdir(parents=True)
        return partial

    def pending(self) -> Path:
        """The partial directory rank 0 began (for the other ranks to add their files to)."""
        partials = [path for _, path, complete in self._numbered() if path.name.endswith(_PARTIAL)]
        if len(partials) != 1:
            raise RuntimeError(f"{self.root}: expected one checkpoint being written, found {len(partials)}")
        return partials[0]

    def commit(self, partial: Path, state: dict) -> Path:
        """Make `partial` complete: fsync its files, write `state.json` last, rename it in, drop older ones."""
        for path in partial.rglob("*"):
            if path.is_file():
                fsync_file(path)
        state_path = partial / STATE
        with open(state_path, "w", encoding="utf-8") as f:
            f.write(json.dumps(state, indent=2, ensure_ascii=False))
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(partial)
        final = partial.with_name(partial.name.removesuffix(_PARTIAL))
        os.replace(partial, final)
        fsync_dir(self.root)
        for _, path, _ in self._numbered():
            if path != final:
                shutil.rmtree(path, ignore_errors=True)
        return final

    def clear(self) -> None:
        """Remove every checkpoint (the run is complete; its final files are in place)."""
        shutil.rmtree(self.root, ignore_errors=True)
