"""Checkpoints: safetensors + JSON (primary), and the seed's .pth layout beside them.

    <dir>/<name>.safetensors   model.<param>, optimizer.<index>.<slot> tensors
    <dir>/<name>.json          format, kind, epoch, best accuracies, lambda_kl, model config,
                               optimizer param groups, scheduler and grad-scaler state, history,
                               and the size and checksum of the safetensors and .pth files
    <dir>/<name>.pth           the seed's layout, for scripts written against it (torch.save of a
                               dict of tensors, numbers and strings: torch.load(weights_only=True)
                               reads it):
                                 epoch, model_state_dict, optimizer_state_dict, scheduler_state_dict,
                                 best_acc, best_acc_<T>f for every validated frame count (4, 8 and
                                 16 by default: the seed's best_acc_4f, best_acc_8f), lambda_kl,
                               and ours: format (PTH_FORMAT) and info (the JSON's other fields as
                               one JSON string: kind, configs, history, ...), so a .pth alone resumes
                               a run exactly too.

names: best (highest validation accuracy at the highest trained frame count), epoch_N, final.
best_acc_<T>f is the accuracy at T frames of the checkpoint's best epoch (the one best_acc
selected; best_epoch names it), max_acc_<T>f each frame count's own maximum over epochs.

All three are written atomically, the .pth and the tensors first; the JSON records their
checksums, so files torn by a crash between writes are detected on load instead of silently
mixing epochs. The JSON pair is primary (what a run resumes from by default, checked before it is
parsed); `--resume <name>.pth` and load_model accept the .pth as well. `load_model` also reads
the official FFN and TSM release files (their layouts: `released.py`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import optimizer_from_parts, optimizer_to_parts, read_torch_file
from ..errors import PolySpaceError
from ..io import (
    _json_default,
    atomic_write_bytes,
    atomic_write_json,
    digest_bytes,
    load_safetensors,
    read_json,
    verify_file,
)

FORMAT = "polyspace-ffn-checkpoint/1"
PTH_FORMAT = "polyspace-ffn-checkpoint/1+seed-pth"
# the seed's keys; best_acc_<T>f of every validated frame count join them
SEED_KEYS = ("epoch", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict", "best_acc", "lambda_kl")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """`runs/x/best`, `runs/x/best.json` or `runs/x/best.safetensors` -> (json path, tensors path)."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".json"), path.with_name(path.name + ".safetensors")


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return type(obj)((k, _cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def seed_pth_bytes(model_state: dict[str, torch.Tensor], optimizer_state: dict[str, Any] | None,
                   info: dict[str, Any]) -> bytes:
    """The seed-layout .pth of a checkpoint (module docstring), as torch.save bytes."""
    rest = {k: v for k, v in info.items() if k not in ("epoch", "best_acc", "lambda_kl", "scheduler")}
    record = {
        "epoch": int(info["epoch"]),
        "model_state_dict": _cpu(dict(model_state)),
        "optimizer_state_dict": _cpu(optimizer_state) if optimizer_state is not None else {},
        "scheduler_state_dict": info["scheduler"],
        "best_acc": float(info["best_acc"]),
        **{k: float(v) for k, v in info.items() if k.startswith("best_acc_")},
        "lambda_kl": float(info.get("lambda_kl", 0.0)),
        "format": PTH_FORMAT,
        "info": json.dumps(rest, default=_json_default),
    }
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | Path, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any] | None, info: dict[str, Any], seed_pth: bool = True) -> Path:
    """Write `<path>.safetensors`, `<path>.pth` (the seed's layout; seed_pth=False leaves it out)
    and `<path>.json`; `info` is JSON-able (epoch, config, scheduler state, ...).

    Returns the JSON path, which is what `load_checkpoint` and `--resume` take.
    """
    from safetensors.torch import save

    json_path, tensor_path = checkpoint_paths(path)
    record: dict[str, Any] = {"format": FORMAT, **info}
    if seed_pth:
        pth_path = json_path.with_suffix(".pth")
        pth = seed_pth_bytes(model_state, optimizer_state, info)
        record["pth_file"], record["pth_checksum"] = pth_path.name, digest_bytes(pth)
        atomic_write_bytes(pth_path, pth)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
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


def read_seed_pth(path: str | Path) -> dict[str, Any] | None:
    """A seed-layout .pth written by save_checkpoint -> its dict; None for any other torch file
    (an official release). Read with weights_only=True."""
    path = Path(path)
    record = read_torch_file(path, fix="pass a train-ffn checkpoint (.json or .pth) or an official release file")
    if isinstance(record, dict) and record.get("format") == PTH_FORMAT:
        return record
    return None


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any] | None]:
    """Either of our layouts -> (info, model state dict, optimizer state dict or None).

    `<name>.json` (or its stem): the JSON + safetensors pair, checked; `<name>.pth`: the seed
    layout. A .pth of another kind is a one-line error (official releases start or evaluate a
    run, they do not resume one)."""
    path = Path(path)
    if path.suffix == ".pth" and not _has_json(path):
        record = read_seed_pth(path)
        if record is None:
            raise PolySpaceError(f"{path}: not a train-ffn checkpoint; an official release starts a new run "
                                 "(train-ffn --resume FILE reads it as one) or is evaluated with --eval_only")
        missing = [k for k in (*SEED_KEYS, "info") if k not in record]
        if missing:
            raise PolySpaceError(f"{path}: has no {missing[0]!r}; the file is damaged, use another checkpoint")
        info = json.loads(record["info"])
        info.update(epoch=record["epoch"], best_acc=record["best_acc"], lambda_kl=record["lambda_kl"],
                    scheduler=record["scheduler_state_dict"],
                    **{k: v for k, v in record.items() if k.startswith("best_acc_")})
        return info, record["model_state_dict"], record["optimizer_state_dict"] or None
    info, model_state, optimizer_tensors = load_checkpoint(path)
    optimizer_state = optimizer_from_parts(optimizer_tensors, info["optimizer"]) if "optimizer" in info else None
    return info, model_state, optimizer_state


def _has_json(path: Path) -> bool:
    """A .pth beside the JSON written with it (its checksum recorded there): the checked JSON pair
    is the same checkpoint and is read instead. A .pth the JSON does not match (copied, or a crash
    between the writes) is read on its own."""
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        return False
    try:
        info = read_json(json_path)
        if info.get("pth_file") != path.name or "pth_checksum" not in info:
            return False
        verify_file(path, info["pth_checksum"], fix="")
        return True
    except PolySpaceError:
        return False


def is_polyspace_checkpoint(path: str | Path) -> bool:
    """Whether `path` names a checkpoint of ours: a .json / .safetensors name, a stem whose JSON
    exists, or a seed-layout .pth we wrote. Anything else is read as an official release file
    (released.py)."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors") or checkpoint_paths(path)[0].is_file():
        return True
    return path.suffix == ".pth" and (_has_json(path) or (path.is_file() and read_seed_pth(path) is not None))


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
    info, model_state, _ = read_checkpoint(path)
    model = TSMResNet(TSMConfig.from_dict(info["model_config"]))
    model.load_state_dict(model_state)
    return model.to(map_location).eval()
