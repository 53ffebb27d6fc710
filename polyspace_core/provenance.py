"""Provenance: what produced a result — git commit and dirty flag, package versions, device, host,
time. One builder for every writer (the workspace's metrics.json, a feature store's manifest, the
report index), so they all record the same fields the same way.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import __version__

_VERSIONED = ["torch", "torchvision", "transformers", "accelerate", "safetensors", "numpy",
              "torchcodec", "decord", "av", "opencv-python-headless", "scikit-image", "papermill", "nbconvert"]


def git_state(root: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout, or None values when it is not a git checkout."""
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None where one is absent)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description(device: Any) -> str:
    """'cuda (<GPU name>)', 'cpu (<cores> cores, <threads> torch threads)' or the device's name."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return str(device)


def provenance(root: Path, device: Any, params: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """git, versions, device, host and time; with `params`, the parameters (paths as text) and
    their seed; `extra` fields (e.g. world_size) are added as given."""
    record: dict[str, Any] = {
        "git": git_state(root),
        "versions": {"polyspace_core": __version__, "python": platform.python_version(), **package_versions()},
        "device": device_description(device),
    }
    if params is not None:
        record["params"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items()}
        record["seed"] = params.get("seed")
    record.update(extra)
    record["host"] = platform.node()
    record["time"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return record
