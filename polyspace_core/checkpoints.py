"""What every checkpoint format here shares: an optimizer's state as tensors + JSON, a strict
weight load with a one-line error, a small module saved as config.json + model.safetensors, and
the one weights-only reader of torch files that other projects wrote.

The formats themselves (a converter set, a fusion head, an FFN run, a colorization system) live
beside their models; they are built from these pieces so that each is written, checked and
failed on the same way.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import PolySpaceError
from .io import atomic_write_json, load_safetensors, read_json, save_safetensors_atomic, verify_recorded

OPTIMIZER_PREFIX = "optimizer."


def optimizer_to_parts(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state_dict -> (its tensors named 'optimizer.<param index>.<slot>', the JSON-able
    rest: param groups and non-tensor slots). Safetensors holds the first, a JSON file the second."""
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIMIZER_PREFIX}{index}.{slot}"] = value.detach().cpu().contiguous()
            else:
                extra.setdefault(str(index), {})[slot] = value
    return tensors, {"param_groups": state["param_groups"], "state_extra": extra}


def optimizer_from_parts(tensors: Mapping[str, torch.Tensor], json_part: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of optimizer_to_parts (other tensors in `tensors` are ignored): a state_dict for
    optimizer.load_state_dict."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIMIZER_PREFIX):
            index, slot = key[len(OPTIMIZER_PREFIX):].split(".", 1)
            state.setdefault(int(index), {})[slot] = value
    for index, slots in json_part.get("state_extra", {}).items():
        state.setdefault(int(index), {}).update(slots)
    return {"state": state, "param_groups": json_part["param_groups"]}


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike,
                           against: str = "the saved config") -> None:
    """module.load_state_dict(state, strict=True), a mismatch becoming one line that names the file."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "state dict mismatch")
        raise PolySpaceError(f"{source}: weights do not fit {against} ({detail[:300]})") from None


def save_module(folder: str | os.PathLike, kind: str, config: Mapping[str, Any], module: nn.Module) -> Path:
    """folder/model.safetensors (every weight) + folder/config.json ({"kind": kind, **config,
    "checksums": the weights file's size and checksum}), the config last."""
    folder = Path(folder)
    weights = save_safetensors_atomic(module.state_dict(), folder / "model.safetensors")
    atomic_write_json(folder / "config.json", {"kind": kind, **config, "checksums": {"model.safetensors": weights}})
    return folder


def read_module(folder: str | os.PathLike, kind: str, map_location: str | torch.device = "cpu",
                what: str = "checkpoint") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config without its kind, weights) of a folder written by save_module for `kind`; a missing
    file or another kind is a one-line error naming the folder."""
    folder = Path(folder)
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise PolySpaceError(f"{what} {folder}: needs config.json and model.safetensors (written by save_pretrained)")
    config = read_json(config_path)
    if config.pop("kind", None) != kind:
        raise PolySpaceError(f"{config_path}: not a {kind} config")
    fix = f"save the {kind} again (save_pretrained)"
    verify_recorded(weights, config.pop("checksums", None), fix=fix)
    return config, load_safetensors(weights, map_location, fix=fix)


def read_torch_file(path: str | os.PathLike, fix: str) -> Any:
    """What a torch.save file holds, read with `torch.load(weights_only=True)` onto the CPU.

    For files other projects wrote (torchvision's ImageNet weights, released checkpoints): tensors,
    numbers, strings and containers of them load; a missing, truncated or damaged file, or one that
    holds other Python objects (which a weights-only load refuses), is a one-line PolySpaceError
    naming the file and ending with `fix`.
    """
    path = Path(path)
    if not path.is_file():
        raise PolySpaceError(f"{path}: file not found; {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is many lines; the refused class is the part that tells the user something
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if refused:
            raise PolySpaceError(f"{path}: holds a Python object ({refused.group(1)}) that a weights-only load "
                                 f"refuses; {fix}") from None
        raise PolySpaceError(f"{path}: not a readable torch file (damaged, truncated or another format); "
                             f"{fix}") from None
    except Exception as e:  # noqa: BLE001 - zip, EOF and OS errors all mean a damaged or truncated file
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise PolySpaceError(f"{path}: not a readable torch file ({detail}): damaged, truncated or another "
                             f"format; {fix}") from None
