"""Atomic writes and checked reads: a result is either fully on disk or not there at all, and a
file that changed after it was written is never used.

Every file the workspace writes goes through these helpers (temp file in the same folder,
fsync, rename), so an interrupted run never leaves a half-written file that reads as valid.
Every weights/features file is recorded with its size and checksum (`digest_bytes`) in the JSON
written beside it (a manifest, config.json, a `checksums` entry or a folder's checksums.json);
readers call `verify_file` before using it. The checksum is xxh3-64: a bit-flip detector that
runs at memory speed, so checking costs a few percent of reading (benchmarks/store_read.py);
sha256 records from older files are still checked.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import xxhash

CHECKSUM = "xxh3_64"
CHECKSUMS_FILE = "checksums.json"  # a folder's sidecar: file name -> {bytes, xxh3_64}


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
                            metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """torch tensors -> .safetensors, atomically. Tensors are made contiguous first. Returns the
    file's record ({"bytes", "xxh3_64"}), for the JSON the caller writes beside it."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()},
                metadata=dict(metadata) if metadata else None)
    atomic_write_bytes(path, data)
    return digest_bytes(data)


# --------------------------------------------------------------------------------------------
# integrity on read: size + checksum, checked once per file per process


def digest_bytes(data: bytes | memoryview) -> dict[str, Any]:
    """{"bytes": size, "xxh3_64": hex digest} of data about to be written."""
    return {"bytes": len(data), CHECKSUM: xxhash.xxh3_64(data).hexdigest()}


def _hash_file(path: Path, algorithm: str, data: Any = None) -> str:
    h = xxhash.xxh3_64() if algorithm == CHECKSUM else hashlib.sha256()
    if data is not None:
        h.update(data)
        return h.hexdigest()
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return h.hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            h.update(mm)
    return h.hexdigest()


def digest_file(path: str | os.PathLike) -> dict[str, Any]:
    """The record of a file already on disk (e.g. one written by another library)."""
    path = Path(path)
    return {"bytes": path.stat().st_size, CHECKSUM: _hash_file(path, CHECKSUM)}


def check_size(path: str | os.PathLike, record: Mapping[str, Any], fix: str) -> os.stat_result:
    """The file's stat, after checking that it exists and has the size its record says (the cheap
    half of verify_file, done before a file is parsed)."""
    from .errors import PolySpaceError

    try:
        st = Path(path).stat()
    except OSError:
        raise PolySpaceError(f"{path}: file not found; {fix}") from None
    if "bytes" in record and int(record["bytes"]) != st.st_size:
        raise PolySpaceError(f"{path}: {st.st_size} bytes where {record['bytes']} were written (truncated or "
                             f"replaced); {fix}")
    return st


_verified: set[tuple] = set()  # (path, inode, size, mtime, digest) of files checked in this process


def verify_file(path: str | os.PathLike, record: Mapping[str, Any], fix: str, data: Any = None) -> None:
    """Check a file against its record (size, then xxh3_64 or sha256) before it is used; once per
    file per process (a file replaced or touched since is checked again). A missing file, another
    size or another checksum is a one-line PolySpaceError naming the file and saying what to do.
    `data`: the file's bytes as the reader already holds them (a memory map); hashing the map the
    reader goes on to use means its pages are faulted in once, not twice."""
    from .errors import PolySpaceError

    path = Path(path)
    st = check_size(path, record, fix)
    algorithm = CHECKSUM if CHECKSUM in record else "sha256" if "sha256" in record else None
    if algorithm is None:
        raise PolySpaceError(f"{path}: its record holds no checksum; {fix}")
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, record[algorithm])
    if key in _verified:
        return
    if _hash_file(path, algorithm, data) != record[algorithm]:
        raise PolySpaceError(f"{path}: checksum does not match the one recorded when it was written (the file "
                             f"is damaged or was changed); {fix}")
    _verified.add(key)


def write_checksums(folder: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Record the size and checksum of files in `folder` (default: every file but the sidecar
    itself) in folder/checksums.json, for a folder written by another library's save_pretrained."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != CHECKSUMS_FILE
                   and not p.name.startswith(".")) if names is None else list(names)
    records = {name: digest_file(folder / name) for name in names}
    atomic_write_json(folder / CHECKSUMS_FILE, {"format": "polyspace-checksums/1", "files": records})
    return records


def verify_folder(folder: str | os.PathLike, fix: str) -> bool:
    """Check every file listed in folder/checksums.json; False where the folder has no sidecar
    (a download or another project's folder: nothing was recorded to check against)."""
    from .errors import PolySpaceError

    folder = Path(folder)
    sidecar = folder / CHECKSUMS_FILE
    if not sidecar.is_file():
        return False
    files = read_json(sidecar).get("files")
    if not isinstance(files, dict):
        raise PolySpaceError(f"{sidecar}: not a checksums file (no 'files'); {fix}")
    for name, record in files.items():
        verify_file(folder / name, record, fix)
    return True


def verify_recorded(path: str | os.PathLike, checksums: Mapping[str, Any] | None, fix: str) -> None:
    """Check `path` against its entry in a JSON's "checksums" ({file name: record}). A file
    written before checksums were recorded is announced once and read unchecked."""
    path = Path(path)
    record = (checksums or {}).get(path.name)
    if record is None:
        key = ("unrecorded", str(path.resolve()))
        if key not in _verified:
            print(f"note: {path} was written without a recorded checksum (an older version); "
                  f"read without an integrity check")
            _verified.add(key)
        return
    verify_file(path, record, fix)
