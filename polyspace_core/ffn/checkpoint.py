"""Checkpoints as a safetensors file (every tensor) plus a JSON file (everything else).

    <dir>/<name>.safetensors   model.<param>, optimizer.<index>.<slot> tensors
    <dir>/<name>.json          format, kind, epoch, best accuracies, lambda_kl, model config,
                               optimizer param groups, scheduler and grad-scaler state, history,
                               and the size and checksum of the safetensors file

Both are written atomically, tensors first; the JSON names the tensors' checksum, so a pair
torn by a crash between the two writes is detected on load instead of silently mixing epochs.
`load_model` also reads the official FFN and TSM release files (their layouts: `released.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoints import optimizer_to_parts
from ..errors import PolySpaceError
from ..io import atomic_write_bytes, atomic_write_json, digest_bytes, load_safetensors, read_json, verify_file

FORMAT = "polyspace-ffn-checkpoint/1"


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """`runs/x/best`, `runs/x/best.json` or `runs/x/best.safetensors` -> (json path, tensors path)."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".json"), path.with_name(path.name + ".safetensors")


def save_checkpoint(path: str | Path, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any] | None, info: dict[str, Any]) -> Path:
    """Write `<path>.safetensors` and `<path>.json`; `info` is JSON-able (epoch, config, ...).

    Returns the JSON path, which is what `load_checkpoint` and `--resume` take.
    """
    from safetensors.torch import save

    json_path, tensor_path = checkpoint_paths(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
    record = {"format": FORMAT, **info}
    if optimizer_state is not None:
        opt_tensors, opt_json = optimizer_to_parts(optimizer_state)
        tensors.update(opt_tensors)
        record["optimizer"] = opt_json
    data = save(tensors)
    record["tensors_file"] = tensor_path.name
    record["tensors_checksum"] = digest_bytes(data)
    atomic_write_bytes(tensor_path, data)
    atomic_write_json(json_path, record)
    return json_path


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Read a checkpoint -> (info from the JSON, model state dict, optimizer tensors).

    Checks the format and that the tensors file is the one the JSON was written with.
    """
    json_path, tensor_path = checkpoint_paths(path)
    if not json_path.is_file():
        raise PolySpaceError(f"{json_path}: checkpoint not found; "
                             f"pass the .json written by train-ffn (e.g. <save_dir>/best.json)")
    info = read_json(json_path)
    if info.get("format") != FORMAT:
        raise PolySpaceError(f"{json_path}: not an FFN/TSM checkpoint "
                             f"(format {info.get('format')!r}, expected {FORMAT})")
    if not tensor_path.is_file():
        raise PolySpaceError(f"{tensor_path}: tensors of checkpoint {json_path.name} are missing")
    # checkpoints written before the xxh3 record hold a sha256 of the file
    record = info.get("tensors_checksum") or {"sha256": info.get("tensors_sha256")}
    fix = f"it does not match {json_path.name} (damaged, or a save was interrupted); use another checkpoint"
    verify_file(tensor_path, record, fix=fix)
    tensors = load_safetensors(tensor_path, fix=fix)
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    return info, model_state, optimizer_tensors


def is_polyspace_checkpoint(path: str | Path) -> bool:
    """Whether `path` names a checkpoint of ours: a .json / .safetensors name, or a stem whose JSON
    exists. Anything else is read as an official release file (released.py)."""
    path = Path(path)
    return path.suffix in (".json", ".safetensors") or checkpoint_paths(path)[0].is_file()


def load_model(path: str | Path, map_location: str | torch.device = "cpu",
               layout: str | None = None) -> torch.nn.Module:
    """Rebuild the TSM/FFN model stored in a checkpoint, with its weights, in eval mode.

    `path` is one of ours (`<name>.json`, see above) or an official FFN-pytorch /
    temporal-shift-module release file (.pth / .pth.tar), mapped onto our model by
    `released.read_release` (`layout`: None/auto detects ffn and tsm; ffn-tsm and tsn are named).
    """
    from .tsm_resnet import TSMConfig, TSMResNet

    path = Path(path)
    if not is_polyspace_checkpoint(path):
        from .released import read_release

        return read_release(path, layout).build().to(map_location).eval()
    info, model_state, _ = load_checkpoint(path)
    model = TSMResNet(TSMConfig.from_dict(info["model_config"]))
    model.load_state_dict(model_state)
    return model.to(map_location).eval()
