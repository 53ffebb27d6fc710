"""SwinTExCo's released checkpoint layout and its conversion onto swintexco.SwinTExCoBranch.

The release (github.com/Chronopt-Research/SwinTExCo, src/inference.py: `SwinTExCo(weights_path)`)
is a folder of three torch state dicts, each loaded strictly into one network:

    embed_net.pth     SwinModel wrapper: `pretrained.<timm features_only key>` (timm's flattened
                      stage names: patch_embed.*, stages_0.* ... stages_3.*)
    nonlocal_net.pth  WarpNet(feature_channel=128): layer2_1 / layer3_1 / layer4_1 / layer5_1
                      (nn.Sequential; convs at indices 1 and 5, PReLUs at 3 and 7, except
                      layer5_1: convs 1 and 6, PReLUs 3 and 8, an upsampling sits between),
                      layer.{0,1,2}.{conv1,conv2,prelu} (residual blocks), theta, phi (1x1 convs)
    colornet.pth      ColorVidNet(7): conv1_1.{0,2}, conv1_2 ... conv10_ab, the three
                      conv*norm_ss depthwise downsamplers, conv{8,9,10}_1.1 (after an Upsample),
                      the shortcut convs and one PReLU per conv named relu*

Every released tensor maps to exactly one tensor of ours (`our_key`) and every tensor of ours
is filled; a key that maps nowhere, a missing key, a shape that differs or a file that is not a
state dict is a one-line PolySpaceError naming the file — nothing is dropped or guessed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..checkpoints import read_torch_file
from ..errors import PolySpaceError
from .swintexco import SwinTExCoBranch, SwinTExCoConfig

RELEASED_FILES = {"embed_net.pth": "embed", "nonlocal_net.pth": "nonlocal_net", "colornet.pth": "colornet"}

# WarpNet's Sequential indices -> (our adapter, our part); layer5_1 has an Upsample at index 4
_ADAPTERS = {
    "layer2_1": (0, {1: "conv1", 3: "act1", 5: "conv2", 7: "act2"}),
    "layer3_1": (1, {1: "conv1", 3: "act1", 5: "conv2", 7: "act2"}),
    "layer4_1": (2, {1: "conv1", 3: "act1", 5: "conv2", 7: "act2"}),
    "layer5_1": (3, {1: "conv1", 3: "act1", 6: "conv2", 8: "act2"}),
}
_FIX = "pass the folder of SwinTExCo's release (embed_net.pth, nonlocal_net.pth, colornet.pth)"


def our_key(file: str, key: str) -> str | None:
    """Our state-dict key for `key` of the released `file`, or None when it has no place."""
    if file == "embed_net.pth":
        return "embed.backbone." + key[len("pretrained."):] if key.startswith("pretrained.") else None
    if file == "colornet.pth":
        return "colornet." + key  # the same names (see swintexco.ColorVidNet)
    if file != "nonlocal_net.pth":
        return None
    m = re.fullmatch(r"(layer\d_1)\.(\d+)\.(weight|bias)", key)
    if m and m.group(1) in _ADAPTERS:
        index, parts = _ADAPTERS[m.group(1)]
        part = parts.get(int(m.group(2)))
        return f"nonlocal_net.adapters.{index}.{part}.{m.group(3)}" if part else None
    m = re.fullmatch(r"layer\.(\d)\.(conv1|conv2|prelu)\.(weight|bias)", key)
    if m:
        return f"nonlocal_net.blocks.{m.group(1)}.{'act' if m.group(2) == 'prelu' else m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"(theta|phi)\.(weight|bias)", key)
    if m:
        return f"nonlocal_net.{'query_proj' if m.group(1) == 'theta' else 'key_proj'}.{m.group(2)}"
    return None


def released_key(key: str) -> tuple[str, str]:
    """(file, released key) of one of our keys: the inverse of our_key (for writing a release)."""
    if key.startswith("embed.backbone."):
        return "embed_net.pth", "pretrained." + key[len("embed.backbone."):]
    if key.startswith("colornet."):
        return "colornet.pth", key[len("colornet."):]
    m = re.fullmatch(r"nonlocal_net\.adapters\.(\d)\.(\w+)\.(weight|bias)", key)
    if m:
        for name, (index, parts) in _ADAPTERS.items():
            if index == int(m.group(1)):
                seq = {v: k for k, v in parts.items()}[m.group(2)]
                return "nonlocal_net.pth", f"{name}.{seq}.{m.group(3)}"
    m = re.fullmatch(r"nonlocal_net\.blocks\.(\d)\.(conv1|conv2|act)\.(weight|bias)", key)
    if m:
        return "nonlocal_net.pth", f"layer.{m.group(1)}.{'prelu' if m.group(2) == 'act' else m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"nonlocal_net\.(query_proj|key_proj)\.(weight|bias)", key)
    if m:
        return "nonlocal_net.pth", f"{'theta' if m.group(1) == 'query_proj' else 'phi'}.{m.group(2)}"
    raise PolySpaceError(f"SwinTExCo branch: {key} has no place in the released layout")


def convert_released(folder: str | os.PathLike, branch: SwinTExCoBranch) -> dict[str, torch.Tensor]:
    """Our state dict for `branch` from the released folder; see the module docstring for what
    counts as a mismatch. The branch is only read (for its keys and shapes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PolySpaceError(f"SwinTExCo release {folder}: not a folder; {_FIX}")
    missing_files = [name for name in RELEASED_FILES if not (folder / name).is_file()]
    if missing_files:
        raise PolySpaceError(f"SwinTExCo release {folder}: no {', '.join(missing_files)}; {_FIX}")
    ours = branch.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for name, part in RELEASED_FILES.items():
        path = folder / name
        state = read_torch_file(path, fix=_FIX)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise PolySpaceError(f"{path}: not a state dict of tensors (holds {type(state).__name__}); {_FIX}")
        unmapped = [k for k in state if our_key(name, k) not in ours]
        if unmapped:
            raise PolySpaceError(f"{path}: {len(unmapped)} tensor(s) that SwinTExCo's {part} does not have, "
                                 f"e.g. {unmapped[0]!r}; is this the right file of the release?")
        for key, value in state.items():
            target = our_key(name, key)
            if tuple(value.shape) != tuple(ours[target].shape):
                raise PolySpaceError(f"{path}: {key} has shape {tuple(value.shape)}, SwinTExCo's {part} "
                                     f"needs {tuple(ours[target].shape)} (another backbone or feature_channel?)")
            converted[target] = value.to(ours[target].dtype)
        lacking = [k for k in ours if k.startswith(part + ".") and k not in converted]
        if lacking:
            raise PolySpaceError(f"{path}: lacks {len(lacking)} tensor(s) of SwinTExCo's {part}, e.g. "
                                 f"{released_key(lacking[0])[1]!r}; {_FIX}")
    return converted


def load_released(folder: str | os.PathLike, backbone: str = "swinv2-cr-t-224",
                  map_location: str | torch.device = "cpu", **overrides) -> SwinTExCoBranch:
    """A SwinTExCoBranch holding the release in `folder` (Strategy 1: the non-local net is
    fine-tuned, embedding and colour net frozen). `overrides` set other SwinTExCoConfig fields,
    e.g. temperature=1e-10 to match the release's inference."""
    try:
        config = SwinTExCoConfig(backbone=backbone, released_from=str(folder), **overrides)
    except TypeError as e:
        raise PolySpaceError(f"SwinTExCo config: {e}") from None
    branch = SwinTExCoBranch(config)
    state = convert_released(folder, branch)
    branch.load_state_dict(state, strict=True)  # convert_released checked every key both ways
    branch.pretrained = True
    branch.apply_strategy()
    return branch.to(map_location)


def save_released(branch: SwinTExCoBranch, folder: str | os.PathLike) -> Path:
    """Write `branch` in the release's layout (three torch files), e.g. to run the original code
    on weights fine-tuned here. Written with torch.save as the release is (tensors only)."""
    from ..io import atomic_write_bytes

    folder = Path(folder)
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in RELEASED_FILES}
    for key, value in branch.state_dict().items():
        file, rkey = released_key(key)
        parts[file][rkey] = value.detach().cpu().contiguous()
    import io as _io

    for file, state in parts.items():
        buffer = _io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(folder / file, buffer.getvalue())
    return folder
