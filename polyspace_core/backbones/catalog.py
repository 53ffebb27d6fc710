"""The backbones we cost, at the configurations of their real checkpoints and as tiny presets.

Counting FLOPs needs the architecture, not the weights, so each real checkpoint is described by
the config kwargs of its transformers class (values from the checkpoints' config.json files /
the V-JEPA 2 conversion script) and built from that config with random weights — on the `meta`
device for counting, where nothing is allocated, so ViT-g (1B parameters) costs no memory:

| name              | class       | checkpoint                                | frames | size | width x depth |
|-------------------|-------------|-------------------------------------------|--------|------|---------------|
| vjepa2_vitl       | VJEPA2Model | facebook/vjepa2-vitl-fpc64-256            | 16     | 256  | 1024 x 24     |
| vjepa2_vith       | VJEPA2Model | facebook/vjepa2-vith-fpc64-256            | 16     | 256  | 1280 x 32     |
| vjepa2_vitg       | VJEPA2Model | facebook/vjepa2-vitg-fpc64-256            | 16     | 256  | 1408 x 40     |
| videomae_base     | VideoMAEModel | MCG-NJU/videomae-base                   | 16     | 224  | 768 x 12      |
| timesformer_base  | TimesformerModel | facebook/timesformer-base-finetuned-k400 | 8   | 224  | 768 x 12      |
| vivit_base        | VivitModel  | google/vivit-b-16x2-kinetics400           | 32     | 224  | 768 x 12      |

V-JEPA 2 takes any frame count; 16 is what the pipeline extracts (`--frames 16`). The tiny presets
(`vjepa2_tiny`, ...) come from `backbones.TINY_PRESETS`, so they are exactly the as-run zoo
architectures. Any other checkpoint — a local folder, or a hub id outside the table
(videomae-huge, timesformer-hr, vjepa2-vitg-384, ...) — is costed from its own config.json: read
from the folder, or for a hub id through the HF cache (HF_HUB_OFFLINE=1 reads only the cache) or
the hub. Only the config is read, never the weights.

Models are built with PyTorch SDPA attention where the class supports it (TimeSformer has its own
matmul attention): that is what a deployment runs and the fast path on CPU, so latencies are not
inflated by materialised attention maps. Its fused CPU kernel, which FlopCounterMode alone counts
as zero, is counted by measure.py's formula (tests check the count equals the eager one; on meta
SDPA decomposes into plain matmuls). V-JEPA 2 runs its encoder only (`skip_predictor=True`); its
predictor's parameters are excluded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import PolySpaceError
from ..measure import Measurement, count_flops, count_parameters, measure_latency, measure_peak_memory


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone at one clip configuration."""

    name: str                 # metrics name: vjepa2_vitl, videomae_tiny, ...
    arch: str                 # backbones.ARCHS key: vjepa2, videomae, timesformer, vivit
    source: str               # the checkpoint (hub id, tiny preset or folder) these numbers stand for
    config: dict[str, Any] = field(default_factory=dict)  # config kwargs of the transformers class
    frames: int = 16
    size: int = 224

    @property
    def patch(self) -> int:
        if self.arch == "vivit":
            return int(self.config.get("tubelet_size", [2, 16, 16])[1])
        return int(self.config.get("patch_size", 16))

    @property
    def tubelet(self) -> int:
        """Frames per temporal token."""
        if self.arch == "vivit":
            return int(self.config.get("tubelet_size", [2, 16, 16])[0])
        if self.arch == "timesformer":
            return 1
        return int(self.config.get("tubelet_size", 2))

    @property
    def width(self) -> int:
        return int(self.config.get("hidden_size", 768))

    @property
    def has_cls(self) -> bool:
        return self.arch in ("timesformer", "vivit")

    def tokens(self, rule: str = "temporal") -> int:
        """T of the (T, D) features the feature store keeps per clip under a token rule."""
        temporal = max(1, self.frames // self.tubelet)
        spatial = (self.size // self.patch) ** 2
        counts = {"temporal": temporal, "full": temporal * spatial, "clip": 1}
        if rule not in counts:
            raise PolySpaceError(f"tokens {rule!r}: use one of {', '.join(counts)}")
        return counts[rule]

    def clip(self) -> dict[str, Any]:
        """The clip spec the FLOPs are counted at."""
        return {"frames": self.frames, "size": self.size, "source": self.source}


_VJEPA2_COMMON = dict(patch_size=16, tubelet_size=2, frames_per_clip=64, mlp_ratio=4.0)
_BASE_VIT = dict(hidden_size=768, num_attention_heads=12, num_hidden_layers=12, intermediate_size=3072)

REAL_BACKBONES: dict[str, BackboneSpec] = {
    "vjepa2_vitl": BackboneSpec("vjepa2_vitl", "vjepa2", "facebook/vjepa2-vitl-fpc64-256", dict(
        _VJEPA2_COMMON, crop_size=256, hidden_size=1024, num_attention_heads=16, num_hidden_layers=24), 16, 256),
    "vjepa2_vith": BackboneSpec("vjepa2_vith", "vjepa2", "facebook/vjepa2-vith-fpc64-256", dict(
        _VJEPA2_COMMON, crop_size=256, hidden_size=1280, num_attention_heads=16, num_hidden_layers=32), 16, 256),
    "vjepa2_vitg": BackboneSpec("vjepa2_vitg", "vjepa2", "facebook/vjepa2-vitg-fpc64-256", dict(
        _VJEPA2_COMMON, crop_size=256, hidden_size=1408, num_attention_heads=22, num_hidden_layers=40,
        mlp_ratio=48 / 11), 16, 256),
    "videomae_base": BackboneSpec("videomae_base", "videomae", "MCG-NJU/videomae-base", dict(
        _BASE_VIT, image_size=224, patch_size=16, num_frames=16, tubelet_size=2), 16, 224),
    "timesformer_base": BackboneSpec("timesformer_base", "timesformer", "facebook/timesformer-base-finetuned-k400",
                                     dict(_BASE_VIT, image_size=224, patch_size=16, num_frames=8,
                                          attention_type="divided_space_time"), 8, 224),
    "vivit_base": BackboneSpec("vivit_base", "vivit", "google/vivit-b-16x2-kinetics400", dict(
        _BASE_VIT, image_size=224, num_frames=32, tubelet_size=[2, 16, 16], hidden_act="gelu_fast"), 32, 224),
}

# registry keys of models.py (and their default hub ids) -> the spec of that checkpoint
ALIASES = {"vjepa2": "vjepa2_vitl", "videomae": "videomae_base", "timesformer": "timesformer_base",
           "vivit": "vivit_base"}
ALIASES.update({spec.source: name for name, spec in REAL_BACKBONES.items()})


def tiny_specs() -> dict[str, BackboneSpec]:
    """The tiny presets of models.py as specs (name 'vjepa2_tiny' for preset 'vjepa2-tiny')."""
    from .models import TINY_PRESETS, TINY_SIZE

    specs = {}
    for preset, (arch, kwargs) in TINY_PRESETS.items():
        frames = int(kwargs.get("num_frames", kwargs.get("frames_per_clip", 16)))
        name = preset.replace("-", "_")
        specs[name] = BackboneSpec(name, arch, preset, dict(kwargs), frames, TINY_SIZE)
    return specs


def backbone_names() -> list[str]:
    return [*REAL_BACKBONES, *tiny_specs()]


def _with_clip(spec: BackboneSpec, frames: int | None, size: int | None) -> BackboneSpec:
    """The same architecture at another frame count / crop size (the config follows the clip)."""
    frames = spec.frames if frames is None else int(frames)
    size = spec.size if size is None else int(size)
    if frames < 1 or size < 1:
        raise PolySpaceError(f"model {spec.name}: frames={frames} and size={size} must be positive")
    if size % spec.patch:
        raise PolySpaceError(f"model {spec.name}: size {size} is not a multiple of its patch size {spec.patch}; "
                             f"pick a multiple of {spec.patch}")
    if spec.arch != "vjepa2" and frames % spec.tubelet:
        raise PolySpaceError(f"model {spec.name}: {frames} frames is not a multiple of its tubelet "
                             f"({spec.tubelet} frames); pick a multiple of {spec.tubelet}")
    config = dict(spec.config)
    if spec.arch == "vjepa2":
        config["crop_size"] = size
        config["frames_per_clip"] = max(int(config.get("frames_per_clip", 64)), frames)
    else:
        config["image_size"] = size
        config["num_frames"] = frames
    return replace(spec, config=config, frames=frames, size=size)


# config.json keys that describe the checkpoint file, not the architecture
_NOT_ARCHITECTURE = ("architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "id2label",
                     "label2id", "_name_or_path")


def _config_spec(name: str, source: str, frames: int | None, *, folder: Path | None = None) -> BackboneSpec:
    """Spec of a checkpoint from its config.json alone (no weights, no processor): a local folder,
    or a hub id read through the HF cache (offline with HF_HUB_OFFLINE=1) or the hub.

    The clip is the config's own: its input size (`image_size`; V-JEPA 2's `crop_size`) and, for
    the fixed-frame architectures, `num_frames` (V-JEPA 2 takes `frames`, default 16). That is the
    size the checkpoint's position embeddings are built for; a store's recorded clip overrides it
    through resolve_backbone(frames=, size=) (stored_model_spec)."""
    from transformers import AutoConfig

    from .models import ARCHS

    where = f"the local folder {folder}" if folder is not None else f"the hub id {source!r}"
    kwargs = {"local_files_only": True} if folder is not None else {}
    try:
        config = AutoConfig.from_pretrained(folder if folder is not None else source, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        fix = ("it must hold the config.json written by save_pretrained" if folder is not None else
               f"fetch its config where there is network (`hf download {source} config.json`; with "
               f"HF_HUB_OFFLINE=1 only the HF cache is read) or pass a local folder holding its config.json")
        raise PolySpaceError(f"model {name!r}: cannot read the config of {where} "
                             f"({str(e).splitlines()[0][:120]}); {fix}") from None
    if config.model_type not in ARCHS:
        raise PolySpaceError(f"model {name!r}: {where} is a {config.model_type!r} checkpoint, not one of the "
                             f"video backbones ({', '.join(ARCHS)})")
    arch = config.model_type
    kwargs = {k: v for k, v in config.to_diff_dict().items() if k not in _NOT_ARCHITECTURE}
    n_frames = int(config.num_frames) if ARCHS[arch].fixed_frames else int(frames or 16)
    size = int(config.crop_size if arch == "vjepa2" else config.image_size)
    return BackboneSpec(name.replace("-", "_"), arch, str(folder) if folder is not None else source, kwargs,
                        n_frames, size)


def _as_folder(source: str) -> Path | None:
    """An existing checkpoint folder: as given (cwd), else relative to the project root (feature
    store manifests may record paths like data/zoo/vjepa2-tiny)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if not path.is_absolute():
        from ..paths import project_root

        try:
            candidate = project_root() / path
        except PolySpaceError:
            return None
        return candidate if candidate.is_dir() else None
    return None


def resolve_backbone(spec: str, frames: int | None = None, size: int | None = None) -> BackboneSpec:
    """A backbone spec from a catalogue name (vjepa2_vitl, videomae_tiny, ...), a models.py
    registry key or tiny preset (vjepa2, videomae-tiny, ...), a local checkpoint folder, any hub id
    of a supported architecture (the catalogue's from the table above, any other from its
    config.json: HF cache or hub), or NAME=SOURCE; optionally at another frame count / crop size.
    A source whose config cannot be read is a one-line PolySpaceError naming it."""
    from .models import _looks_like_hub_id, parse_model_spec

    text = str(spec).strip()
    name, source = parse_model_spec(text) if "=" in text else (None, text)
    key = source.replace("-", "_") if source.replace("-", "_") in backbone_names() else source
    key = ALIASES.get(key, key)
    catalogue = {**REAL_BACKBONES, **tiny_specs()}
    folder = _as_folder(source)
    if key in catalogue:
        found = catalogue[key]
    elif folder is not None:
        found = _config_spec(name or folder.name, source, frames, folder=folder)
    elif _looks_like_hub_id(source):
        found = _config_spec(name or source.split("/")[-1], source, frames)
    else:
        raise PolySpaceError(f"model {text!r}: not a known backbone ({', '.join(backbone_names())}, or the "
                             f"registry keys {', '.join(k for k in ALIASES if '/' not in k)}), a local "
                             f"checkpoint folder nor a hub id like org/name; pick one of those")
    if name:
        found = replace(found, name=name.replace("-", "_"))
    if frames is not None or size is not None:
        found = _with_clip(found, frames, size)
    return found


def stored_model_spec(name: str, info: Mapping[str, Any]) -> BackboneSpec:
    """The backbone behind a feature store's model entry (its manifest record: source and clip),
    at the frames and size it was extracted with (a clip without a recorded height: the config's
    own size). A model without a backbone source (features imported from the original's caches)
    or whose config cannot be read is a one-line error."""
    source, clip = info.get("source"), info.get("clip")
    if not source or not isinstance(clip, Mapping) or "frames" not in clip:
        raise PolySpaceError(f"model {name!r}: the feature store records no backbone for it (source "
                             f"{source!r}, e.g. features imported from a pickle cache), so its cost cannot be "
                             f"counted; featurize with the backbone itself, or leave the costs out "
                             f"(eval --no_costs; 05's eval_costs: false)")
    size = int(clip["height"]) if clip.get("height") is not None else None
    return resolve_backbone(f"{name}={source}", frames=int(clip["frames"]), size=size)


def build_backbone(spec: BackboneSpec, device: torch.device | str = "meta") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, forward kwargs for one clip of random pixels) on `device`, with SDPA
    attention where the class has it (see the module docstring).

    Random weights: FLOPs and latency do not depend on the values. On `meta` nothing is allocated.
    The predictor of V-JEPA 2 is built (it is part of the class) but never run."""
    from .models import ARCHS
    from .models import _transformers_class as transformers_class

    arch = ARCHS[spec.arch]
    config = transformers_class(arch.config_class)(**spec.config)
    model_class = transformers_class(arch.model_class)
    config._attn_implementation = "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"
    device = torch.device(device)
    with torch.device(device):
        model = model_class(config, **arch.load_kwargs).eval()
        pixels = torch.randn(1, spec.frames, 3, spec.size, spec.size)
    kwargs: dict[str, Any] = {arch.input_key: pixels}
    if spec.arch == "vjepa2":
        kwargs["skip_predictor"] = True
    return model, kwargs


def encoder_prefixes(spec: BackboneSpec) -> tuple[str, ...]:
    """Parameter-name prefixes that are not part of the clip-feature path."""
    return ("predictor.",) if spec.arch == "vjepa2" else ()


def backbone_cost(spec: BackboneSpec, device: torch.device | str = "cpu", *, latency: bool = False,
                  latency_max_gflops: float | None = None, warmup: int = 1, repeats: int = 3) -> Measurement:
    """One clip through a backbone's encoder (B=1, spec.frames x spec.size²). FLOPs and parameters
    are counted on the meta device. Latency and peak memory are measured on `device` (random
    weights) when `latency` is true, or when the clip costs at most `latency_max_gflops`."""
    model, inputs = build_backbone(spec, "meta")
    flops = count_flops(lambda: model(**inputs))
    params = count_parameters(model, exclude_prefixes=encoder_prefixes(spec))
    info = {"kind": "backbone", "arch": spec.arch, "frames": spec.frames, "size": spec.size,
            "tokens_temporal": spec.tokens("temporal"), "dim": spec.width, "source": spec.source}
    result = Measurement(spec.name, flops.total, params, flops_by_op=flops.by_op, spec=info)
    del model, inputs
    if latency_max_gflops is not None:
        latency = latency or flops.total / 1e9 <= latency_max_gflops
    if latency:
        model, inputs = build_backbone(spec, device)

        def run():
            return model(**inputs)
        result.memory = measure_peak_memory(run, device)
        result.latency = measure_latency(run, device, warmup=warmup, repeats=repeats)
        del model, inputs
    return result
