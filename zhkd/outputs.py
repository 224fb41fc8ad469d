"""Output paths: which ones zhkd made, who is writing one now, and when one may replace another.

Every command that writes goes through here, so the rules are the same for all of them:

- An `--output` directory that is an existing file is refused; so is a non-empty directory without a
  zhkd marker. zhkd never writes into, nor deletes from, a directory it did not make.
- A directory zhkd made holds `.zhkd-output.json`: its kind (one per command: dataset, pretrain,
  finetune, distill, evaluation, demo) and the settings that made it. A directory of another kind is
  refused; one of the same kind is resumed, skipped or replaced as its command decides (each kind says
  here when its output is complete).
- While a process writes a directory it holds `.zhkd-lock` (an flock, so the kernel frees it even after
  kill -9): a second build or training into the same directory stops with one line instead of mixing
  files.
- A path that is also an input of the command is refused before anything is opened for writing.
- Replacing happens only after the new output is complete: files through `replacing_file` (a partial
  name, renamed over the old one at the end); directories by their command (a dataset is staged beside
  the old one and swapped in; an evaluation the same).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from zhkd.errors import ZhkdError

MARKER = ".zhkd-output.json"
LOCK = ".zhkd-lock"
BOOKKEEPING = (MARKER, LOCK)


class OutputError(ZhkdError):
    """An output path zhkd may not write: a file, someone else's directory, one in use (names the path)."""


@dataclass(frozen=True)
class Kind:
    """One kind of output: the command that makes it, and when it is complete."""

    name: str
    command: str
    noun: str
    complete: Callable[[Path], bool]
    legacy: Callable[[Path], bool] | None = None  # recognises one made before markers existed


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Add a kind of output (the hook a new command goes through)."""
    KINDS[kind.name] = kind
    return kind


def _has(*names: str) -> Callable[[Path], bool]:
    return lambda path: all((path / name).is_file() for name in names)


register_kind(Kind("dataset", "build", "a soft-label dataset", _has("COMPLETED"),
                   legacy=lambda p: _has("COMPLETED", "manifest.json")(p) or (p / ".zhkd-build.json").is_file()))
register_kind(Kind("pretrain", "pretrain", "a pre-training run", _has("summary.json")))
register_kind(Kind("finetune", "finetune", "a fine-tuning run", _has("summary.json")))
register_kind(Kind("distill", "distill", "a distillation run", _has("summary.json")))
register_kind(Kind("evaluation", "evaluate", "an evaluation", _has("evaluation.json")))
register_kind(Kind("demo", "demo", "a demo", _has("report.json")))


def _kind(name: str) -> Kind:
    if name not in KINDS:
        raise OutputError(f"unknown output kind {name!r}; one of {', '.join(KINDS)}")
    return KINDS[name]


# --- durable writes -----------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make renames and new names inside a directory durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a written file to disk (before a manifest, COMPLETED or a rename makes it count)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name, fsync, rename: readers see the old bytes or the new, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# --- inputs against outputs ------------------------------------------------------------------------------


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (resolved, so links and `./x` vs `x` count as the same)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def refuse_inputs(output: str | Path, inputs: Iterable[str | Path | None], *, directory: bool) -> None:
    """An output that is one of the inputs (or, for a directory, holds one) would destroy what it reads."""
    out = Path(output).resolve()
    for given in inputs:
        if given is None or "://" in str(given):
            continue
        path = Path(given)
        if same_path(path, out):
            raise OutputError(f"{output}: it is also an input; choose another --output")
        if directory and out in path.resolve().parents:
            raise OutputError(f"{given}: an input inside --output {output}; choose another --output")


# --- directories ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """What an output directory holds now: nothing (marker None), or a zhkd output of the asked kind."""

    path: Path
    kind: str
    marker: dict | None

    @property
    def ours(self) -> bool:
        return self.marker is not None

    @property
    def complete(self) -> bool:
        return self.ours and KINDS[self.kind].complete(self.path)

    @property
    def settings(self) -> dict | None:
        return (self.marker or {}).get("settings")


def read_marker(path: Path) -> dict | None:
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OutputError(f"{marker}: unreadable ({err}); zhkd will not guess whose directory this is") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise OutputError(f"{marker}: not a zhkd output marker")
    return data


def inspect(path: str | Path, kind: str) -> Found:
    """Read-only: refuse a file, someone else's directory, or zhkd's of another kind; else say what is there."""
    spec = _kind(kind)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: an existing file; --output names a directory for {spec.noun}")
    names = sorted(n for n in os.listdir(path) if n != LOCK) if path.is_dir() else []
    if not names:
        return Found(path, kind, None)
    marker = read_marker(path)
    if marker is None:
        if spec.legacy is not None and spec.legacy(path):
            return Found(path, kind, {"kind": kind, "settings": None})
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        raise OutputError(f"{path} is not empty and was not made by zhkd {spec.command} (it holds {shown}); "
                          "choose a new or empty directory")
    if marker["kind"] != kind:
        other = KINDS[marker["kind"]]
        raise OutputError(f"{path} holds {other.noun} (zhkd {other.command}), not {spec.noun}; "
                          "choose another --output")
    return Found(path, kind, marker)


def differences(old: dict | None, new: dict | None) -> list[str]:
    """The settings that differ, as `name: old -> new` (for a refusal that says what changed)."""
    old, new = old or {}, new or {}
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def require_same_settings(found: Found, settings: dict | None, what: str) -> None:
    """A resumed or reused output must have been made with these very settings."""
    if found.settings is not None and found.settings != settings:
        changed = differences(found.settings, settings)
        raise OutputError(f"{found.path} holds {what} with other settings ({'; '.join(changed[:3])}"
                          f"{' ...' if len(changed) > 3 else ''}); rerun with the same settings, or choose "
                          "another --output")


def _lock(path: Path) -> int:
    import fcntl

    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 100, 0).decode("utf-8", "backslashreplace").strip() or "another process"
        os.close(fd)
        raise OutputError(f"{path} is being written by another zhkd process ({holder}); wait for it to finish, "
                          "or choose another --output") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    return fd


class Claim:
    """A directory this process writes: locked and marked. Use as a context manager (or `release()`).

    When the block fails and the directory was made for it and holds nothing but zhkd's bookkeeping, the
    directory goes again, so a refused or failed first run leaves no trace.
    """

    def __init__(self, found: Found, fd: int | None, created: bool) -> None:
        self.path, self.kind, self.found, self._fd, self.created = found.path, found.kind, found, fd, created

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor frees the flock
            self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, kind, error, tb) -> None:
        try:
            if error is not None and self.created and self.path.is_dir():
                left = set(os.listdir(self.path)) - set(BOOKKEEPING)
                if not left:
                    for name in BOOKKEEPING:
                        (self.path / name).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        self.path.rmdir()
        finally:
            self.release()


def claim(path: str | Path, kind: str, *, settings: dict | None = None, found: Found | None = None) -> Claim:
    """Lock `path` for writing an output of `kind` (made when absent), marked with `settings`.

    `found` is the caller's earlier `inspect` (it decided from it); the directory is inspected again under
    the lock, and a change in between (another process got there first) is refused.
    """
    path = Path(path)
    found = found if found is not None else inspect(path, kind)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    fd = _lock(path)
    try:
        again = inspect(path, kind)
        if again.marker != found.marker:
            raise OutputError(f"{path} changed while zhkd was starting (another process?); run again")
        if found.marker is None or found.settings is None:
            import importlib.metadata

            marker = {"kind": kind, "settings": settings, "zhkd": importlib.metadata.version("zhkd")}
            write_atomic(path / MARKER, (json.dumps(marker, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
            found = Found(path, kind, marker)
    except BaseException:
        os.close(fd)
        raise
    return Claim(found, fd, created)


def claim_run(path: str | Path, kind: str, settings: dict, *, resume: bool, rank: int = 0) -> Claim | None:
    """The output of a resumable run (pretrain, finetune, distill), checked before anything is written.

    A directory holding a run of this kind is continued only with `resume` and only with the very same
    settings; None means it is complete already (nothing to do). Under torchrun only rank 0 checks, locks
    and marks; the other ranks only learn whether the run is complete (rank 0's refusal stops the job).
    """
    if rank != 0:
        found = Found(Path(path), kind, read_marker(Path(path)))
        return None if resume and found.complete else Claim(found, None, False)
    found = inspect(path, kind)
    noun = KINDS[kind].noun.removeprefix("a ")
    if found.ours:
        if not resume:
            if found.complete:
                raise OutputError(f"{path} holds a finished {noun}; choose another --output")
            raise OutputError(f"{path} holds an interrupted {noun}; pass --resume to continue it, or choose "
                              "another --output")
        require_same_settings(found, settings, f"a {noun}")
        if found.complete:
            return None
    return claim(path, kind, settings=settings, found=found)


# --- files ---------------------------------------------------------------------------------------------


class PartialFile:
    """A text file written under `.NAME.zhkd-partial` (locked) and renamed over NAME by `commit()`."""

    def __init__(self, path: Path) -> None:
        import fcntl

        self.path = path
        self.partial = path.with_name(f".{path.name}.zhkd-partial")
        self.file = open(self.partial, "a+", encoding="utf-8")  # noqa: SIM115 (closed by commit/discard)
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise OutputError(f"{path} is being written by another zhkd process; wait for it to finish, "
                              "or choose another --output") from None
        self.file.seek(0)
        self.file.truncate()  # what a killed run left there is ours, and stale

    def write(self, text: str) -> None:
        self.file.write(text)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        os.replace(self.partial, self.path)
        self.file.close()
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


@contextlib.contextmanager
def replacing_files(paths: list[Path], *, inputs: Iterable[str | Path | None], overwrite: bool,
                    ours: Callable[[Path], bool], command: str) -> Iterator[list[PartialFile]]:
    """Partial files for `paths`, renamed into place together when the block ends without an error.

    An existing path is replaced only with `overwrite`, and only when `ours(path)` recognises it as this
    command's output; the inputs are never among them. Until the block ends the old files stay as they were.
    """
    inputs = list(inputs)
    for path in paths:
        refuse_inputs(path, inputs, directory=False)
        if path.is_dir():
            raise OutputError(f"{path}: an existing directory; --output names a file")
        if path.exists():
            if not overwrite:
                raise OutputError(f"{path} exists; pass --overwrite to replace an earlier zhkd {command} output, "
                                  "or choose another --output")
            if not ours(path):
                raise OutputError(f"{path} exists and is not a zhkd {command} output; zhkd will not replace it")
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    files: list[PartialFile] = []
    try:
        for path in paths:
            files.append(PartialFile(path))
        yield files
    except BaseException:
        for f in files:
            f.discard()
        raise
    for f in files:
        f.commit()
