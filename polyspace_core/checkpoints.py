"""What every checkpoint format here shares: an optimizer's state as tensors + JSON, a strict
weight load with a one-line error, a small module saved as config.json + model.safetensors, the
one weights-only reader of torch files that other projects wrote, and the folder a path in the
original scripts' file form (`converters_ep10.pt`) stands for.

The formats themselves (a converter set, a fusion head, an FFN run, a colorization system) live
beside their models; they are built from these pieces so that each is written, checked and
failed on the same way.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
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


def config_from(config_cls: type, raw: dict[str, Any], folder: str | os.PathLike) -> Any:
    """config_cls(**raw) for a config read from `folder`; unknown or missing fields are a one-line
    error naming its config.json."""
    try:
        return config_cls(**raw)
    except TypeError as e:
        raise PolySpaceError(f"{Path(folder) / 'config.json'}: unexpected config ({e})") from None


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


# the original scripts' checkpoint files: <save_dir>/converters_ep10.pt, <save_dir>/fusion_ep5.pt,
# and the seeds' shorthand ./checkpoints/converters.pt
_ORIGINAL_FILE = re.compile(r"^(?P<stem>.+?)(?:_ep(?P<epoch>\d+))?\.(?:pt|pth)$")


def folder_for_original_file(path: str | os.PathLike, is_ours: Callable[[Path], bool], what: str,
                             fix: str) -> tuple[Path, int | None]:
    """Where the original scripts wrote one torch file per epoch (`<save_dir>/converters_ep10.pt`,
    `<save_dir>/fusion_ep5.pt`) ours write a folder. A path in the original's form that does not
    exist names the folder `is_ours` accepts among: its parent (the save_dir that held the
    per-epoch files) and the path without its suffix (`./checkpoints/converters.pt` ->
    `./checkpoints/converters`, the original's default save_dir). Returns (folder, N of an
    `_ep<N>` name, else None); the caller checks N against what the folder holds. An existing
    file (the original's own pickled checkpoint, never unpickled here), no such folder or two of
    them is a one-line error; `what` names the flag, `fix` says how to make a folder."""
    given, path = os.fspath(path), Path(path)  # messages quote the path as the user wrote it
    match = _ORIGINAL_FILE.match(path.name)
    if path.is_file():
        raise PolySpaceError(f"{what} {given}: a file; ours are folders ({fix}); the original's own checkpoints "
                             f"hold its other converter and head classes and are not converted")
    if match is None:
        raise PolySpaceError(f"{what} {given}: no such folder; {fix}")
    candidates = list(dict.fromkeys(p for p in (path.parent, path.with_suffix("")) if is_ours(p)))
    if len(candidates) != 1:
        looked = " and ".join(str(p) for p in (path.parent, path.with_suffix("")))
        problem = "both hold one, so it is ambiguous" if candidates else "neither holds one"
        raise PolySpaceError(f"{what} {given}: names the original's file; looked for ours in {looked}: "
                             f"{problem}; pass the folder ({fix})")
    return candidates[0], int(match["epoch"]) if match["epoch"] else None
