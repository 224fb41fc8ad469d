"""File operations on the output directory, local or on any Beam filesystem (gs://...).

Local writes go through a temporary name, an fsync and a rename; object stores make an object visible
only when its upload completes, which gives the same guarantee.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def join(base: str, *parts: str) -> str:
    if is_local(base):
        return os.path.join(base, *parts)
    return posixpath.join(base.rstrip("/"), *parts)


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def read_text(path: str) -> str:
    if is_local(path):
        return Path(path).read_text("utf-8")
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read().decode("utf-8")


def write_bytes(path: str, data: bytes) -> None:
    if is_local(path):
        from zhkd.outputs import write_atomic

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write_atomic(Path(path), data)
        return
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def put_file(local_path: str, dest: str) -> None:
    """Move a finished local file to its destination (an upload for remote destinations)."""
    if is_local(dest):
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        shutil.move(local_path, dest)
        return
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with open(local_path, "rb") as src, FileSystems.create(dest, compression_type=CompressionTypes.UNCOMPRESSED) as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    os.remove(local_path)


def get_file(src: str, local_path: str) -> None:
    """Copy a file to a local path (a streamed download for remote sources)."""
    if is_local(src):
        shutil.copyfile(src, local_path)
        return
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.open(src, compression_type=CompressionTypes.UNCOMPRESSED) as f, open(local_path, "wb") as dst:
        shutil.copyfileobj(f, dst, 1 << 24)


def move(src: str, dest: str) -> None:
    if is_local(src):
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        os.replace(src, dest)
        return
    from apache_beam.io.filesystems import FileSystems

    FileSystems.rename([src], [dest])


def sync_dir(directory: str) -> None:
    """Make the renames inside a local directory durable; object stores need nothing."""
    if is_local(directory):
        from zhkd.outputs import fsync_dir

        fsync_dir(Path(directory))


def list_names(directory: str) -> list[str]:
    """Base names of the entries directly under a directory (none when it does not exist)."""
    if is_local(directory):
        return sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    from apache_beam.io.filesystems import FileSystems

    prefix = directory.rstrip("/") + "/"
    paths = [m.path for m in FileSystems.match([prefix + "**"])[0].metadata_list]
    return sorted({p[len(prefix):].split("/", 1)[0] for p in paths if p.startswith(prefix)})


def delete(path: str) -> None:
    """Delete a file or a directory tree, if it exists."""
    if is_local(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    from apache_beam.io.filesystems import FileSystems

    results = FileSystems.match([path, path.rstrip("/") + "/**"])
    matched = {m.path for result in results for m in result.metadata_list}
    if matched:
        FileSystems.delete(sorted(set(matched)))
