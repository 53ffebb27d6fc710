"""Checkpoints released with the official FFN and TSM code, read into our TSMResNet.

Both projects save `{'epoch', 'arch', 'state_dict', 'optimizer', 'best_prec1', ...}` with
torch.save (read here with `torch.load(weights_only=True)`). `state_dict` comes from their TSN
wrapper inside DataParallel/DDP, so its keys start with `module.`, then `base_model.` (the
ResNet) or `new_fc.` (the classifier, which follows a dropout that replaced `base_model.fc`;
with dropout 0 the classifier stays `base_model.fc`). The layouts, told apart by their keys:

  ffn      BeSpontaneous/FFN-pytorch, 2D_Network/main_FFN.py + ops/backbone/resnet_TSM_FFN.py:
           shared convolutions; per frame count T (4, 8, 16) its own BatchNorms `bn1_T` (stem),
           `bnK_T` (blocks) and `downsample_bn_T`, and a depthwise 1x1 conv without bias
           `adaconv_T` (the block's input channels) applied after the shift as adaconv(x) + x,
           before conv1; the shared downsample conv is `downsample_conv`.
  tsm      mit-han-lab/temporal-shift-module, main.py: torchvision's ResNet with the shift
           wrapping each block's conv1 (`layerL.B.conv1.net.weight`); `downsample.0` / `.1`.
  ffn-tsm  FFN-pytorch's TSM baseline (main.py + resnet_TSM.py, the TSM rows of the FFN paper):
           torchvision's names; the shift is a parameter-free module in every block (no `.net`).
  tsn      temporal-shift-module's TSN baseline (no shift): the same names as ffn-tsm.

ffn-tsm and tsn have the same key names but need different computations, so such a file needs
its layout named (`layout=`, `polyspace train-ffn --release_layout`); ffn and tsm are detected.

Their name -> ours (s: the stream of frame count T, streams sorted by T; single-stream files
use stream 0):

  base_model.conv1.weight                              conv1.weight
  base_model.bn1_T.* | base_model.bn1.*                bn1.bns.s.* | bn1.bns.0.*
  base_model.layerL.B.conv1.weight | conv1.net.weight  layerL.B.conv1.conv.weight
  base_model.layerL.B.conv2.weight, conv3.weight       layerL.B.conv2.weight, conv3.weight
  base_model.layerL.B.bnK_T.* | bnK.*                  layerL.B.bnK.bns.s.* | bnK.bns.0.*
  base_model.layerL.B.adaconv_T.weight                 layerL.B.conv1.adaconvs.s.weight
  base_model.layerL.B.downsample_conv.weight           layerL.B.downsample.0.weight
  base_model.layerL.B.downsample_bn_T.*                layerL.B.downsample.1.bns.s.*
  base_model.layerL.B.downsample.0.weight | .1.*       layerL.B.downsample.0.weight | .1.bns.0.*
  new_fc.* | base_model.fc.*                           fc.*

Every tensor of the file must land somewhere and every tensor of the model must come from the
file (only `num_batches_tracked`, absent from files saved before torch 0.4.1, may be missing);
anything else is a one-line error naming the key. What keys cannot hold is fixed by the official
code: a 7x7 stride-2 stem with max pool, Bottleneck blocks with the stride on the 3x3 conv, the
shift of 1/8 of the channels each way in every block (FFN-pytorch hardcodes fold_div 8;
temporal-shift-module names it in its file names, `shift8`, read from there when present).

Not loadable, one line each: temporal-shift-module's ResNet-101 files, which shift only every
other block (its `n_round` 2) while our model shifts every block; shift placed on the whole block
(`place=block`), non-local and temporal-pool variants, TEA, MobileNet/BNInception, BasicBlock
ResNets (18/34): their tensors have no place in our model, so they are refused, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import read_torch_file
from ..errors import PolySpaceError
from .archs import ARCHS
from .tsm_resnet import TSMConfig, TSMResNet

LAYOUTS = ("ffn", "tsm", "ffn-tsm", "tsn")
DESCRIPTIONS = {
    "ffn": "an official FFN release (FFN-pytorch)",
    "tsm": "an official TSM release (temporal-shift-module)",
    "ffn-tsm": "an official TSM baseline of FFN-pytorch",
    "tsn": "an official TSN release (temporal-shift-module, no shift)",
}
_FIX = ("pass a train-ffn checkpoint (.json) or an official FFN-pytorch / temporal-shift-module .pth(.tar) "
        "as released")

# keys only the FFN layout has: per-stream BatchNorms, adaconvs, the split downsample
_FFN_MARK = re.compile(r"^base_model\.(bn1_\d+\.|layer\d+\.\d+\.(bn\d_\d+\.|adaconv_\d+\.|downsample_conv\.|"
                       r"downsample_bn_\d+\.))")
_NET_MARK = re.compile(r"^base_model\.layer\d+\.\d+\.conv1\.net\.weight$")       # TSM: the shift wraps conv1
_PLAIN_MARK = re.compile(r"^base_model\.layer\d+\.\d+\.conv1\.weight$")          # torchvision's own name
_STREAM_SUFFIX = re.compile(r"(?:bn\d|downsample_bn|adaconv)_(\d+)\.")
_BLOCK = r"^base_model\.layer(\d+)\.(\d+)\."
_BN_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def _rules(layout: str) -> list[tuple[re.Pattern, str]]:
    """(their key pattern, our key template) for a layout; {s} is the stream of the matched T."""
    head = [(re.compile(r"^(?:new_fc|base_model\.fc)\.(weight|bias)$"), "fc.{0}"),
            (re.compile(r"^base_model\.conv1\.weight$"), "conv1.weight"),
            (re.compile(_BLOCK + r"conv([23])\.weight$"), "layer{0}.{1}.conv{2}.weight")]
    if layout == "ffn":
        return head + [
            (re.compile(r"^base_model\.bn1_(\d+)\." + _BN_PARAM + "$"), "bn1.bns.{s0}.{1}"),
            (re.compile(_BLOCK + r"conv1\.weight$"), "layer{0}.{1}.conv1.conv.weight"),
            (re.compile(_BLOCK + r"bn([123])_(\d+)\." + _BN_PARAM + "$"), "layer{0}.{1}.bn{2}.bns.{s3}.{4}"),
            (re.compile(_BLOCK + r"adaconv_(\d+)\.weight$"), "layer{0}.{1}.conv1.adaconvs.{s2}.weight"),
            (re.compile(_BLOCK + r"downsample_conv\.weight$"), "layer{0}.{1}.downsample.0.weight"),
            (re.compile(_BLOCK + r"downsample_bn_(\d+)\." + _BN_PARAM + "$"),
             "layer{0}.{1}.downsample.1.bns.{s2}.{3}"),
        ]
    conv1 = r"conv1\.net\.weight$" if layout == "tsm" else r"conv1\.weight$"
    return head + [
        (re.compile(r"^base_model\.bn1\." + _BN_PARAM + "$"), "bn1.bns.0.{0}"),
        (re.compile(_BLOCK + conv1), "layer{0}.{1}.conv1.conv.weight"),
        (re.compile(_BLOCK + r"bn([123])\." + _BN_PARAM + "$"), "layer{0}.{1}.bn{2}.bns.0.{3}"),
        (re.compile(_BLOCK + r"downsample\.0\.weight$"), "layer{0}.{1}.downsample.0.weight"),
        (re.compile(_BLOCK + r"downsample\.1\." + _BN_PARAM + "$"), "layer{0}.{1}.downsample.1.bns.0.{2}"),
    ]


def detect_layout(keys: list[str]) -> str | None:
    """'ffn', 'tsm' or 'plain' (ffn-tsm or tsn: the same names) from state dict keys without the
    `module.` prefix; None when they are none of the official layouts."""
    if any(_FFN_MARK.match(k) for k in keys):
        return "ffn"
    if any(_NET_MARK.match(k) for k in keys):
        return "tsm"
    if any(_PLAIN_MARK.match(k) for k in keys):
        return "plain"
    return None


@dataclass
class Release:
    """An official checkpoint mapped onto our model: its config, every tensor under our names,
    and what the file says about itself (epoch, arch, best_prec1 where present)."""

    path: Path
    layout: str
    config: TSMConfig
    state: dict[str, torch.Tensor]
    source_keys: dict[str, str]                 # our name -> their name, for messages and checks
    info: dict[str, Any] = field(default_factory=dict)

    def build(self) -> TSMResNet:
        """A new TSMResNet holding the Release's tensors themselves, not copies (train mode, like any new
        module; call .eval())."""
        with torch.device("meta"):  # no random init of weights that are replaced at once (ResNet-50: ~1 s)
            model = TSMResNet(self.config)
        model.load_state_dict(self.state, assign=True)
        return model

    def load_into(self, model: TSMResNet) -> None:
        """Copy the weights into an existing model, which must have the file's shape: arch,
        class count, streams (frame counts when several), adaconvs, shift."""
        ours, theirs = model.config, self.config
        checks = [("widths", "--arch"), ("depths", "--arch"), ("stem_width", "--arch"), ("stem_kernel", "--arch"),
                  ("stem_stride", "--arch"), ("stem_pool", "--arch"), ("in_channels", "--arch"),
                  ("num_classes", "the labels"), ("adaconv", "--model ffn for an FFN file, --model tsm for TSM"),
                  ("shift_div", "a model with the file's temporal shift; TSN files have none")]
        # one stream takes any clip length, so a single-stream file fits any trained count
        if len(theirs.frame_counts) > 1 or len(ours.frame_counts) > 1:
            checks.append(("frame_counts", "--num_frames_l/m/h"))
        for name, fix in checks:
            if getattr(ours, name) != getattr(theirs, name):
                raise PolySpaceError(f"{self.path}: {DESCRIPTIONS[self.layout]} with {name} "
                                     f"{_show(getattr(theirs, name))}, but this run's model has "
                                     f"{_show(getattr(ours, name))}; match it ({fix})")
        model.load_state_dict(self.state)

    def describe(self) -> str:
        """One line: what the file is and that every tensor found its place."""
        facts = [f"arch {self.config.arch}", f"{'/'.join(map(str, self.config.frame_counts))}-frame "
                 f"stream{'s' if len(self.config.frame_counts) > 1 else ''}", f"{self.config.num_classes} classes"]
        facts += [f"{k} {self.info[k]}" for k in ("epoch", "best_prec1") if k in self.info]
        return (f"{self.path}: {DESCRIPTIONS[self.layout]} ({', '.join(facts)}); all {len(self.source_keys)} "
                "tensors mapped onto our model")


def _show(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def _state_and_info(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    info: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
        for key in ("epoch", "arch", "best_prec1"):
            value = obj.get(key)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float, str)):
                info[key] = round(value, 4) if isinstance(value, float) else value
    else:
        state = obj  # a bare state dict (e.g. saved from model.module.state_dict())
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) for k in state):
        raise PolySpaceError(f"{path}: neither a polyspace checkpoint nor an official FFN/TSM release "
                             f"(no state dict inside); {_FIX}")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise PolySpaceError(f"{path}: state_dict entry '{key}' is a {type(value).__name__}, not a tensor; {_FIX}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}   # DataParallel / DDP prefix
    return state, info


def _frames_from_name(path: Path) -> int | None:
    """The trained frame count the official scripts put in their names: temporal-shift-module's
    `..._segment8_e45.pth`, FFN-pytorch's `.../frame16/round1/ckpt.best.pth.tar`."""
    match = re.search(r"(?:^|_)segment(\d+)(?:_|\.|$)", path.name)
    if match:
        return int(match.group(1))
    folder = next((part for part in reversed(path.parent.parts) if re.fullmatch(r"frame\d+", part)), None)
    return int(folder[len("frame"):]) if folder else None


def read_release(path: str | Path, layout: str | None = None, default_frames: int = 8) -> Release:
    """Read an official FFN / TSM / TSN release file and map it onto our TSMResNet.

    layout: None or 'auto' detects ffn and tsm by their keys; ffn-tsm and tsn share key names and
    must be named. default_frames: the trained frame count recorded for a single-stream file whose
    name does not carry one (`segmentN` / `frameN`); it only limits which clips training accepts,
    evaluation takes any count. Returns a Release (config, state under our names, file info). A
    damaged file, a file of another layout, a tensor without a place in our model, a tensor our
    model needs that the file lacks, or a shape that does not fit is a one-line PolySpaceError.
    """
    path = Path(path)
    if layout not in (None, "auto", *LAYOUTS):
        raise PolySpaceError(f"--release_layout {layout!r}: choose auto, {', '.join(LAYOUTS)}")
    state, info = _state_and_info(path, read_torch_file(path, fix=_FIX))
    found = detect_layout(list(state))
    if found is None:
        raise PolySpaceError(f"{path}: neither a polyspace checkpoint (<name>.json + <name>.safetensors from "
                             f"train-ffn) nor an official FFN/TSM release (keys module.base_model.*); its first key is "
                             f"'{next(iter(state))}'")
    if layout in (None, "auto"):
        if found == "plain":
            raise PolySpaceError(f"{path}: torchvision-style keys without FFN streams or a TSM '.net': FFN-pytorch's "
                                 "TSM baseline (shift in every block) or temporal-shift-module's TSN (no shift), which "
                                 "their keys cannot tell apart; name it with --release_layout ffn-tsm or tsn")
        layout = found
    elif (found == "plain") != (layout in ("ffn-tsm", "tsn")) or (found != "plain" and found != layout):
        raise PolySpaceError(f"{path}: --release_layout {layout}, but its keys are in the "
                             f"{found if found != 'plain' else 'ffn-tsm/tsn'} layout")

    if layout == "tsm":
        # temporal-shift-module's ResNet-101 shifts every other block only; ours shifts all
        unshifted = sorted(k for k in state if _PLAIN_MARK.match(k))
        if unshifted:
            raise PolySpaceError(f"{path}: '{unshifted[0]}' has no temporal shift (the TSM code shifts only every "
                                 "other block of deep ResNets) but our TSM ResNet shifts every block, so these "
                                 "weights would not compute the same; not loadable")

    counts = sorted({int(m.group(1)) for k in state for m in [_STREAM_SUFFIX.search(k)] if m}) if layout == "ffn" \
        else []
    stream = {t: i for i, t in enumerate(counts)}
    ours: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    rules = _rules(layout)
    for key, value in state.items():
        for pattern, template in rules:
            match = pattern.match(key)
            if match:
                groups = match.groups()
                name = template.format(*groups, **{f"s{i}": stream.get(int(g), -1) if g.isdigit() else -1
                                                   for i, g in enumerate(groups)})
                break
        else:
            raise PolySpaceError(f"{path}: '{key}' has no place in our TSM ResNet ({DESCRIPTIONS[layout]} holds only "
                                 "the parts listed in polyspace_core/ffn/released.py); this variant is not loadable")
        if name in ours:
            raise PolySpaceError(f"{path}: '{source[name]}' and '{key}' both give our '{name}'; the file is not one "
                                 "model's state dict")
        ours[name], source[name] = value, key

    # their classifier is `new_fc` behind a dropout, or `base_model.fc` when trained with dropout 0
    dropout = 0.5 if source.get("fc.weight", "").startswith("new_fc") else 0.0
    config = _config_from(path, ours, layout, counts or [_frames_from_name(path) or default_frames], dropout, info)
    with torch.device("meta"):  # names, shapes and dtypes only
        expected = TSMResNet(config).state_dict()
    unexpected = [k for k in ours if k not in expected]
    if unexpected:
        raise PolySpaceError(f"{path}: '{source[unexpected[0]]}' has no place in a model of this shape "
                             f"(our '{unexpected[0]}'); the file is not one complete {layout} model")
    missing = [k for k in expected if k not in ours and not k.endswith("num_batches_tracked")]
    if missing:
        raise PolySpaceError(f"{path}: lacks the tensor for our '{missing[0]}'"
                             + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                             + f"; an incomplete {layout} file")
    for key, value in expected.items():
        if key not in ours:
            ours[key] = torch.zeros((), dtype=value.dtype)  # num_batches_tracked, absent before torch 0.4.1
        elif ours[key].shape != value.shape:
            raise PolySpaceError(f"{path}: '{source[key]}' is {tuple(ours[key].shape)} where the model its other "
                                 f"tensors describe needs {tuple(value.shape)}; the file is inconsistent")
        else:
            ours[key] = ours[key].to(value.dtype)
    return Release(path, layout, config, ours, source, info)


def _config_from(path: Path, ours: dict[str, torch.Tensor], layout: str, frame_counts: list[int], dropout: float,
                 info: dict[str, Any]) -> TSMConfig:
    """The TSMConfig the mapped tensors describe (shapes), plus what the official code fixes."""
    for needed in ("conv1.weight", "fc.weight", "fc.bias"):
        if needed not in ours:
            raise PolySpaceError(f"{path}: has no tensor for our '{needed}'; an incomplete {layout} file")
    blocks: dict[int, set[int]] = {}
    for key in ours:
        match = re.match(r"layer(\d+)\.(\d+)\.", key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    stages = sorted(blocks)
    if not stages or stages != list(range(1, len(stages) + 1)) or any(
            sorted(b) != list(range(len(b))) for b in blocks.values()):
        raise PolySpaceError(f"{path}: its layers/blocks {({s: sorted(b) for s, b in blocks.items()})} are not "
                             "numbered from 1 and 0 without gaps; an incomplete file")
    for stage in stages:
        for block in sorted(blocks[stage]):
            if f"layer{stage}.{block}.conv3.weight" not in ours:
                raise PolySpaceError(f"{path}: block layer{stage}.{block} has no conv3: a BasicBlock ResNet "
                                     "(resnet18/34); our TSM ResNet is built from Bottleneck blocks (resnet50/101)")
    widths = tuple(int(ours[f"layer{s}.0.conv2.weight"].shape[0]) for s in stages)
    depths = tuple(len(blocks[s]) for s in stages)
    stem = ours["conv1.weight"]
    fields = dict(widths=widths, depths=depths, stem_width=int(stem.shape[0]), in_channels=int(stem.shape[1]),
                  stem_kernel=int(stem.shape[2]), stem_stride=2, stem_pool=True)
    arch = next((name for name, preset in ARCHS.items()
                 if all(preset.get(k, TSMConfig.__dataclass_fields__[k].default) == v for k, v in fields.items())),
                "custom")
    said = info.get("arch")
    if isinstance(said, str) and said in ARCHS and said != arch:
        raise PolySpaceError(f"{path}: says arch {said!r} but its tensors are {arch if arch != 'custom' else 'another'}"
                             f" ResNet (depths {list(depths)}); the file is inconsistent")
    shift_div = 8  # FFN-pytorch hardcodes fold_div 8; temporal-shift-module's released files are all shift8
    if layout == "tsn":
        shift_div = 0
    elif layout == "tsm":
        named = re.search(r"shift(\d+)", path.name)
        shift_div = int(named.group(1)) if named else shift_div
    return TSMConfig(num_classes=int(ours["fc.weight"].shape[0]), frame_counts=tuple(frame_counts),
                     adaconv=layout == "ffn", shift_div=shift_div,
                     dropout=dropout, arch=arch, **fields)
