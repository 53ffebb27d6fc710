"""Atomic writes: a result is either fully on disk or not there at all.

Every file the workspace writes goes through these helpers (temp file in the same folder,
fsync, rename), so an interrupted run never leaves a half-written file that reads as valid.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and paths show up in metrics and manifests; write them plainly
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    text = json.dumps(obj, indent=indent, default=_json_default, sort_keys=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    from .errors import PolySpaceError

    path = Path(path)
    if not path.is_file():
        raise PolySpaceError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PolySpaceError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def output_folder(path: str | os.PathLike) -> Path:
    """The folder an output file `path` goes to, created if needed and checked writable by
    writing a scratch file there, so a command stops at its start (not after hours of work) with
    one line when the folder cannot be made (a parent is a file) or written."""
    import tempfile

    from .errors import PolySpaceError

    folder = Path(path).expanduser().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise PolySpaceError(f"{path}: cannot write there ({why} at {e.filename or folder}); "
                             f"choose an output path in a folder you can write") from None
    return folder


def load_safetensors(path: str | os.PathLike, device: str | Any = "cpu",
                     fix: str = "write it again with the command that made it") -> dict[str, Any]:
    """Every tensor of a .safetensors file on `device`. A missing file, or one that is truncated,
    damaged or in another format (a pickle under a .safetensors name), is a one-line
    PolySpaceError naming the file and saying what to do (`fix`), not safetensors' own error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .errors import PolySpaceError

    path = Path(path)
    if not path.is_file():
        raise PolySpaceError(f"{path}: file not found; {fix}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PolySpaceError(f"{path}: not a readable safetensors file ({detail}): damaged, truncated or "
                             f"another format; {fix}") from None


def save_safetensors_atomic(tensors: Mapping[str, Any], path: str | os.PathLike,
                            metadata: Mapping[str, str] | None = None) -> Path:
    """torch tensors -> .safetensors, atomically. Tensors are made contiguous first."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()},
                metadata=dict(metadata) if metadata else None)
    return atomic_write_bytes(path, data)
