"""The ImageNet start of a TSM/FFN ResNet: which torchvision file, where it is, how it loads.

The FFN paper, like TSM, always starts from ImageNet. `polyspace train-ffn --pretrained imagenet`
reads torchvision's ResNet weights from `--imagenet_weights FILE` or, without it, from
torchvision's own cache folder (`torch.hub.get_dir()/checkpoints`: `$TORCH_HOME/hub/checkpoints`,
by default `~/.cache/torch/hub/checkpoints`), where `torchvision.models.resnet50(weights=...)`
puts its downloads. Nothing is downloaded here (the project runs offline); a missing file is one
line saying which file to put where.

Files looked for, first found wins (IMAGENET_FILES):

    resnet50-19c8e357.pth   the classic file; the official FFN and TSM code start from it
    resnet50-0676ba61.pth   torchvision's IMAGENET1K_V1 (the same training recipe, re-saved)
    resnet50-11ad3fa6.pth   torchvision's IMAGENET1K_V2 (a newer recipe)

Both layouts load: the classic file predates BatchNorm's `num_batches_tracked`, so a missing
`num_batches_tracked` keeps the model's own (it only matters for BatchNorm without momentum);
any other missing or unexpected key is a one-line error naming it. The 1000-class `fc` is left
out (the video classifier is new) and so are FFN's per-stream weight alterations (they start at
~0, i.e. as the plain network); every stream's BatchNorm starts from the same ImageNet BatchNorm.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..checkpoints import read_torch_file
from ..errors import PolySpaceError
from ..io import load_safetensors
from .tsm_resnet import TSMResNet

# per arch: the classic file first (what the official code uses), then torchvision's V1 and V2
IMAGENET_FILES: dict[str, tuple[str, ...]] = {
    "resnet50": ("resnet50-19c8e357.pth", "resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    "resnet101": ("resnet101-5d3b4d8f.pth", "resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"),
}
DOWNLOAD_URL = "https://download.pytorch.org/models/"
_FIX = "use a torchvision ResNet state dict (e.g. torchvision's resnet50-19c8e357.pth)"


def imagenet_cache_dir() -> Path:
    """torchvision's download folder for weights: $TORCH_HOME/hub/checkpoints (torch.hub's rule)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_imagenet_weights(arch: str, weights_file: str | Path | None = None) -> Path:
    """The ImageNet weights file for `arch`: `weights_file` when given (it must exist), else the
    first of IMAGENET_FILES[arch] in torchvision's cache folder. None found, or an arch without
    ImageNet weights, is a one-line PolySpaceError saying which file to put where."""
    folder = imagenet_cache_dir()
    if weights_file is not None:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise PolySpaceError(f"--imagenet_weights {path}: file not found; pass torchvision's ResNet weights file, "
                                 f"or leave the flag out to use torchvision's cache folder {folder}")
        return path
    names = IMAGENET_FILES.get(arch)
    if names is None:
        raise PolySpaceError(f"--pretrained imagenet: --arch {arch} has no ImageNet weights (torchvision has them "
                             f"for {', '.join(IMAGENET_FILES)}); use one of those, --imagenet_weights FILE of the "
                             "same shapes, or --pretrained none to train from scratch")
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise PolySpaceError(f"--pretrained imagenet: no ImageNet weights for --arch {arch} in {folder}; put "
                         f"torchvision's {names[0]} ({DOWNLOAD_URL}{names[0]}, or {' / '.join(names[1:])}) into "
                         f"{folder}/, pass --imagenet_weights FILE, or train from scratch with --pretrained none")


def torchvision_name(key: str) -> str:
    """Our parameter name -> the torchvision ResNet name it starts from."""
    key = re.sub(r"\.bns\.\d+\.", ".", key)          # every stream starts from the same BN
    return key.replace(".conv1.conv.", ".conv1.")     # the shifted conv wraps the original conv1


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        state = load_safetensors(path, fix=_FIX)
    else:
        state = read_torch_file(path, fix=_FIX)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps the state dict
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PolySpaceError(f"{path}: not a state dict of tensors; {_FIX}")
    return state


def load_imagenet_weights(model: TSMResNet, path: str | Path) -> dict[str, int]:
    """Load a torchvision ResNet state dict (ImageNet weights) into `model`, except the classifier.

    `path` is a .safetensors file or a torch file (read with weights_only=True), in the classic
    (no `num_batches_tracked`) or the current torchvision layout. Every stream's BatchNorms start
    from the same ImageNet BatchNorm; adaconvs and fc keep their init. Any missing tensor other
    than `num_batches_tracked`, any tensor without a place in the model, or a shape that differs
    is a one-line PolySpaceError naming the key. Returns counts: loaded (our tensors set),
    source_tensors (file tensors used), kept_num_batches_tracked (absent from the file).
    """
    path = Path(path)
    state = _read_state(path)
    arch = model.config.arch
    new_state, used, kept = {}, set(), 0
    for key, value in model.state_dict().items():
        if key.startswith("fc.") or ".adaconvs." in key:
            continue  # new classifier and FFN-only parameters keep their init
        source = torchvision_name(key)
        if source not in state:
            if key.endswith("num_batches_tracked"):
                kept += 1  # the classic file predates this counter
                continue
            raise PolySpaceError(f"{path}: has no '{source}', which arch {arch!r} needs; use torchvision weights "
                                 "of the same ResNet depth")
        if state[source].shape != value.shape:
            raise PolySpaceError(f"{path}: '{source}' is {tuple(state[source].shape)} but arch {arch!r} needs "
                                 f"{tuple(value.shape)}; use weights of the same ResNet width and depth")
        new_state[key] = state[source].to(value.dtype)
        used.add(source)
    unexpected = sorted(k for k in state if k not in used and k not in ("fc.weight", "fc.bias"))
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise PolySpaceError(f"{path}: unexpected '{unexpected[0]}'{more}, which has no place in arch {arch!r}; "
                             "the file is not a torchvision ResNet of this depth")
    model.load_state_dict(new_state, strict=False)
    return {"loaded": len(new_state), "source_tensors": len(used), "kept_num_batches_tracked": kept}
