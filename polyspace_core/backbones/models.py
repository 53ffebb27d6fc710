"""Video backbones: the real transformers classes behind one small interface.

Four architectures, each the transformers class a hub checkpoint uses:

| key          | class            | default checkpoint                         | frames   | clip feature            |
|--------------|------------------|--------------------------------------------|----------|-------------------------|
| vjepa2       | VJEPA2Model      | facebook/vjepa2-vitl-fpc64-256             | any (16) | mean of encoder tokens  |
| videomae     | VideoMAEModel    | MCG-NJU/videomae-base                      | 16       | mean of tokens (no CLS) |
| timesformer  | TimesformerModel | facebook/timesformer-base-finetuned-k400   | 8        | CLS after final norm    |
| vivit        | VivitModel       | google/vivit-b-16x2-kinetics400            | 32       | CLS of last_hidden_state|

V-JEPA 2 runs its encoder only (`skip_predictor=True`). ViViT is loaded without its pooler
(the checkpoint has none; a freshly initialised pooler would be a random layer).

Tiny presets `vjepa2-tiny`, `videomae-tiny`, `timesformer-tiny`, `vivit-tiny` are the same
classes with small configs (32 px, 8-16 frames, 2-3 layers, width 64-128) and RANDOM weights,
initialised from a fixed per-preset seed so every process builds the same network. They exist
for smoke tests and as the architectures the tiny zoo (`polyspace_core.features.zoo`) trains; the zoo's
trained copies live in `data/zoo/<name>` and load like any local checkpoint.

Wherever a key is accepted, a hub id or a local directory (saved with `save_pretrained` of
the model AND its processor) is accepted too, optionally named: `teacher_a=path/to/dir`.
A source that cannot be loaded is a one-line PolySpaceError; never a substitute network.

Token rules (per clip, CLS excluded from token rules), and the token grid each has (`token_grid`,
recorded in the store's manifest as "grid"):
  temporal  (T', D)   mean over the spatial tokens of each temporal index (tubelet)   (T', 1, 1)
  full      (T'*S, D) every patch token, time-major, row-major in space               (T', H', W')
  clip      (1, D)    the clip feature of the table above                            (1, 1, 1)
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import PolySpaceError
from ..io import verify_folder

TOKEN_RULES = ("temporal", "full", "clip")


@dataclass(frozen=True)
class Arch:
    """What we need to know about one transformers video architecture."""
    key: str
    model_class: str          # transformers class name of the backbone
    config_class: str
    processor_class: str      # video processor saved with tiny presets
    hub_id: str               # the default checkpoint of the registry key
    has_cls: bool             # a CLS token at position 0 of last_hidden_state
    clip_rule: str            # "mean" (mean of all patch tokens) or "cls"
    fixed_frames: bool        # True: the model's own config.num_frames; False: any count
    input_key: str            # forward() argument name for the pixels
    load_kwargs: dict = field(default_factory=dict)


ARCHS: dict[str, Arch] = {
    "vjepa2": Arch("vjepa2", "VJEPA2Model", "VJEPA2Config", "VJEPA2VideoProcessor",
                   "facebook/vjepa2-vitl-fpc64-256", has_cls=False, clip_rule="mean",
                   fixed_frames=False, input_key="pixel_values_videos"),
    "videomae": Arch("videomae", "VideoMAEModel", "VideoMAEConfig", "VideoMAEVideoProcessor",
                     "MCG-NJU/videomae-base", has_cls=False, clip_rule="mean",
                     fixed_frames=True, input_key="pixel_values"),
    "timesformer": Arch("timesformer", "TimesformerModel", "TimesformerConfig", "TimesformerVideoProcessor",
                        "facebook/timesformer-base-finetuned-k400", has_cls=True, clip_rule="cls",
                        fixed_frames=True, input_key="pixel_values"),
    "vivit": Arch("vivit", "VivitModel", "VivitConfig", "VivitVideoProcessor",
                  "google/vivit-b-16x2-kinetics400", has_cls=True, clip_rule="cls",
                  fixed_frames=True, input_key="pixel_values",
                  load_kwargs={"add_pooling_layer": False}),
}

# Tiny presets: same classes, small configs. 32 px crops of SynthMotion's 64 px frames; the
# widths differ on purpose so converters map between spaces of different dimension.
TINY_SIZE = 32
TINY_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "vjepa2-tiny": ("vjepa2", dict(crop_size=TINY_SIZE, patch_size=8, frames_per_clip=16, tubelet_size=2,
                                   hidden_size=96, num_attention_heads=4, num_hidden_layers=3, mlp_ratio=4.0,
                                   pred_hidden_size=48, pred_num_attention_heads=4, pred_num_hidden_layers=1,
                                   num_pooler_layers=1, pred_num_mask_tokens=2)),
    "videomae-tiny": ("videomae", dict(image_size=TINY_SIZE, patch_size=8, num_frames=16, tubelet_size=2,
                                       hidden_size=128, num_attention_heads=4, num_hidden_layers=3,
                                       intermediate_size=384, decoder_hidden_size=64, decoder_num_hidden_layers=1,
                                       decoder_num_attention_heads=2, decoder_intermediate_size=128)),
    "timesformer-tiny": ("timesformer", dict(image_size=TINY_SIZE, patch_size=8, num_frames=8, hidden_size=96,
                                             num_attention_heads=4, num_hidden_layers=3, intermediate_size=288)),
    "vivit-tiny": ("vivit", dict(image_size=TINY_SIZE, num_frames=16, tubelet_size=[2, 8, 8], hidden_size=64,
                                 num_attention_heads=4, num_hidden_layers=3, intermediate_size=192)),
}


@dataclass(frozen=True)
class ClipSpec:
    """How a model wants its clip: frame count, crop, resize and normalisation (from its processor)."""
    frames: int
    height: int
    width: int
    resize: dict[str, int] | None
    mean: list[float]
    std: list[float]
    rescale_factor: float
    offset: bool              # ViViT: pixels * rescale - 1 before normalising
    processor: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _transformers_class(name: str):
    import transformers

    return getattr(transformers, name)


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load report and progress bars; we check missing weights ourselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------------------------
# the backbone wrapper


class VideoBackbone(nn.Module):
    """A transformers video model + its processor + the token rules.

    `preprocess(clips)`: list of (T, H, W, 3) uint8 RGB clips -> pixels (B, T, 3, h, w) float32,
    via the checkpoint's own processor (resize, crop, rescale, normalise).
    `features(pixels, tokens)`: (B, T', D) for "temporal", (B, T'*S, D) for "full", (B, 1, D) for
    "clip". `hidden_states(pixels)`: last_hidden_state (B, L, D).
    """

    def __init__(self, name: str, source: str, arch: Arch, model: nn.Module, processor: Any, frames: int):
        super().__init__()
        self.name = name
        self.source = source
        self.arch = arch
        self.model = model.eval()
        self.processor = processor
        cfg = model.config
        if arch.key == "timesformer" and cfg.attention_type not in ("divided_space_time", "joint_space_time"):
            raise PolySpaceError(f"model {name!r} ({source}): TimeSformer attention_type {cfg.attention_type!r} "
                                 f"is not supported; use divided_space_time or joint_space_time")
        self.frames = int(cfg.num_frames) if arch.fixed_frames else int(frames)
        self.clip_spec = _clip_spec(processor, self.frames)
        self.dim = int(cfg.hidden_size)
        patch = cfg.tubelet_size[1:] if arch.key == "vivit" else (cfg.patch_size, cfg.patch_size)
        patch = tuple(patch) if isinstance(patch, (list, tuple)) else (patch, patch)
        # the patch grid of one temporal index (H', W'), row-major in the token order
        self.patch_grid = (self.clip_spec.height // patch[0], self.clip_spec.width // patch[1])
        self.spatial_tokens = self.patch_grid[0] * self.patch_grid[1]
        if arch.key == "vivit":
            tubelet = int(cfg.tubelet_size[0])
        elif arch.key in ("vjepa2", "videomae"):
            tubelet = int(cfg.tubelet_size)
        else:
            tubelet = 1  # TimeSformer: one token per frame per patch
        # V-JEPA 2 repeats a clip shorter than a tubelet; otherwise frames // tubelet
        self.temporal_tokens = max(1, self.frames // tubelet)

    # ---- shapes

    def num_tokens(self, tokens: str) -> int:
        """T of the (T, D) features under a token rule."""
        _check_rule(tokens)
        return {"temporal": self.temporal_tokens, "full": self.temporal_tokens * self.spatial_tokens,
                "clip": 1}[tokens]

    def token_grid(self, tokens: str) -> tuple[int, int, int]:
        """(T, H, W) of the token grid under a token rule (T * H * W = num_tokens): (T', H', W')
        for "full" (tokens time-major, then row-major over the patches), (T', 1, 1) for
        "temporal", (1, 1, 1) for "clip". Length adaptation resamples over it."""
        _check_rule(tokens)
        return {"temporal": (self.temporal_tokens, 1, 1), "full": (self.temporal_tokens, *self.patch_grid),
                "clip": (1, 1, 1)}[tokens]

    def describe(self, tokens: str) -> dict[str, Any]:
        """The manifest entry of this model for a token rule (`grid`: the token grid (T, H, W))."""
        return {
            "name": self.name, "source": self.source, "arch": self.arch.key,
            "class": self.arch.model_class, "clip": self.clip_spec.to_dict(), "tokens": tokens,
            "clip_rule": self.arch.clip_rule, "T": self.num_tokens(tokens), "dim": self.dim,
            "grid": list(self.token_grid(tokens)),
        }

    # ---- compute

    def preprocess(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """(T, H, W, 3) uint8 clips -> (B, T, 3, h, w) float32 pixels, by the model's processor."""
        return preprocess_clips(self.processor, clips, self.frames, self.name)

    def hidden_states(self, pixels: torch.Tensor) -> torch.Tensor:
        """last_hidden_state (B, L, D) of the encoder for pixels (B, T, 3, h, w)."""
        kwargs = {self.arch.input_key: pixels}
        if self.arch.key == "vjepa2":
            kwargs["skip_predictor"] = True
        return self.model(**kwargs).last_hidden_state

    def split_tokens(self, hidden: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """last_hidden_state (B, L, D) -> (CLS (B, D) or None, patch tokens (B, T', S, D))."""
        b, _, d = hidden.shape
        cls = hidden[:, 0] if self.arch.has_cls else None
        patches = hidden[:, 1:] if self.arch.has_cls else hidden
        t, s = self.temporal_tokens, self.spatial_tokens
        if patches.shape[1] != t * s:
            raise PolySpaceError(f"model {self.name!r}: got {patches.shape[1]} patch tokens, expected "
                                 f"{t} x {s}; the clip does not match the model's frames/size")
        if self.arch.key == "timesformer":
            # TimeSformer orders tokens patch-major: (S, T) -> (T, S)
            patches = patches.reshape(b, s, t, d).transpose(1, 2)
        else:
            patches = patches.reshape(b, t, s, d)
        return cls, patches

    @torch.no_grad()
    def features(self, pixels: torch.Tensor, tokens: str = "temporal",
                 autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Token features for pixels (B, T, 3, h, w) under a token rule, float32 on the model's
        device. `autocast_dtype` (float16/bfloat16, see `autocast_dtype_for`) runs the forward
        under autocast on the model's device."""
        _check_rule(tokens)
        device = next(self.model.parameters()).device
        pixels = pixels.to(device, non_blocking=True)
        ctx = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
               if autocast_dtype is not None else contextlib.nullcontext())
        with ctx:
            hidden = self.hidden_states(pixels)
        return token_rule(self, hidden.float(), tokens)

    def forward(self, pixels: torch.Tensor, tokens: str = "clip") -> torch.Tensor:
        """Differentiable features (used by zoo training): like `features`, with gradients."""
        return token_rule(self, self.hidden_states(pixels), tokens)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Save model AND processor so `load_backbone(directory)` gets both back."""
        directory = Path(directory)
        with _quiet_transformers():
            self.model.save_pretrained(directory)
            self.processor.save_pretrained(directory)
        return directory


# feature dtypes whose precision the backbones run in (the store's dtype names)
_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast_dtype_for(dtype: str | None, device: str | torch.device) -> torch.dtype | None:
    """The one precision policy of the backbones (featurize, and the student in video mode):
    features stored as `dtype` ("float32", "float16", "bfloat16") are computed under autocast in
    that dtype, bfloat16 on any device (torch autocasts CPU ops to bf16), float16 on CUDA only
    (CPU float16 autocast is emulated: slow, and not what a GPU run computes); None = float32."""
    if dtype is not None and dtype not in (*_HALF, "float32"):
        raise PolySpaceError(f"dtype {dtype!r}: features are float32, float16 or bfloat16")
    half = _HALF.get(dtype)
    if half is torch.float16 and torch.device(device).type != "cuda":
        return None
    return half


def preprocess_clips(processor: Any, clips: Sequence[np.ndarray], frames: int, name: str) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB clips -> (B, T, 3, h, w) float32 pixels through a checkpoint's
    processor (its resize, centre crop, rescale and normalisation). Used in loader workers,
    which get the processor but not the model."""
    from transformers.video_processing_utils import BaseVideoProcessor

    for c in clips:
        if c.ndim != 4 or c.shape[-1] != 3 or c.shape[0] != frames:
            raise PolySpaceError(f"model {name!r}: expects clips of {frames} RGB frames (T, H, W, 3), "
                                 f"got {tuple(c.shape)}")
    if isinstance(processor, BaseVideoProcessor):
        out = processor(list(clips), return_tensors="pt")
    else:  # an image processor (older checkpoints) takes each video as a list of frames
        out = processor([list(c) for c in clips], return_tensors="pt")
    pixels = out["pixel_values"] if "pixel_values" in out else out["pixel_values_videos"]
    return pixels.float()


def token_rule(backbone: VideoBackbone, hidden: torch.Tensor, tokens: str) -> torch.Tensor:
    """Apply a token rule to last_hidden_state (B, L, D) -> (B, T, D)."""
    cls, patches = backbone.split_tokens(hidden)
    if tokens == "temporal":
        return patches.mean(dim=2)
    if tokens == "full":
        return patches.flatten(1, 2)
    if backbone.arch.clip_rule == "cls":
        return cls.unsqueeze(1)
    return patches.flatten(1, 2).mean(dim=1, keepdim=True)


def _check_rule(tokens: str) -> None:
    if tokens not in TOKEN_RULES:
        raise PolySpaceError(f"tokens {tokens!r}: use one of {', '.join(TOKEN_RULES)}")


def _as_hw(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value, value
    if hasattr(value, "height") and value.height is not None:
        return int(value.height), int(value.width)
    if isinstance(value, dict) and "height" in value:
        return int(value["height"]), int(value["width"])
    return None


def _clip_spec(processor: Any, frames: int) -> ClipSpec:
    crop = _as_hw(getattr(processor, "crop_size", None)) if getattr(processor, "do_center_crop", False) else None
    size = getattr(processor, "size", None)
    size_dict = dict(size) if isinstance(size, dict) else ({k: v for k, v in vars(size).items() if v is not None}
                                                            if size is not None and hasattr(size, "__dict__") else None)
    if crop is None:
        crop = _as_hw(size_dict)
    if crop is None:
        raise PolySpaceError(f"processor {type(processor).__name__}: cannot tell its output size "
                             f"(no crop_size or height/width size)")
    return ClipSpec(frames=frames, height=crop[0], width=crop[1],
                    resize=size_dict if getattr(processor, "do_resize", True) else None,
                    mean=[float(x) for x in processor.image_mean], std=[float(x) for x in processor.image_std],
                    rescale_factor=float(getattr(processor, "rescale_factor", 1 / 255)),
                    offset=type(processor).__name__.startswith("Vivit") and bool(getattr(processor, "offset", True)),
                    processor=type(processor).__name__)


# --------------------------------------------------------------------------------------------
# loading


def parse_model_spec(spec: str) -> tuple[str, str]:
    """'name=source' or 'source' -> (name, source). The default name is the registry key,
    the folder name of a local directory, or the last part of a hub id."""
    spec = str(spec).strip()
    if "=" in spec:
        name, source = (p.strip() for p in spec.split("=", 1))
        if not name or not source:
            raise PolySpaceError(f"model {spec!r}: write NAME=SOURCE or just SOURCE")
        return name, source
    if spec in ARCHS or spec in TINY_PRESETS:
        return spec, spec
    return Path(spec.rstrip("/")).name, spec


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return (len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))
            and not Path(source).exists())


def model_choices() -> str:
    return ", ".join([*ARCHS, *TINY_PRESETS])


def build_tiny(preset: str) -> tuple[nn.Module, Any]:
    """A tiny preset with RANDOM weights (fixed per-preset seed) and its processor."""
    if preset not in TINY_PRESETS:
        raise PolySpaceError(f"model {preset!r}: not a tiny preset; use one of {', '.join(TINY_PRESETS)}")
    key, cfg_kwargs = TINY_PRESETS[preset]
    arch = ARCHS[key]
    config = _transformers_class(arch.config_class)(**cfg_kwargs)
    with torch.random.fork_rng(devices=[]):
        # same weights in every process (distributed extraction, resume) and every run
        torch.manual_seed(zlib.crc32(preset.encode()))
        model = _transformers_class(arch.model_class)(config, **arch.load_kwargs)
    proc_cls = _transformers_class(arch.processor_class)
    if key == "vjepa2":
        processor = proc_cls(crop_size=TINY_SIZE)
    else:
        processor = proc_cls(size={"shortest_edge": TINY_SIZE}, crop_size={"height": TINY_SIZE, "width": TINY_SIZE})
    return model.eval(), processor


def _load_pretrained(name: str, source: str, local_files_only: bool | None) -> tuple[Arch, nn.Module, Any]:
    from transformers import AutoConfig, AutoImageProcessor, AutoVideoProcessor

    where = "local directory" if Path(source).exists() else "hub id"
    hint = ("check the path; it must hold config.json, the weights and the processor config "
            "(save both with save_pretrained)" if where == "local directory" else
            "download it where there is network (`hf download " + source + "`) and pass the local "
            "directory, or set HF_HOME to a cache that has it")
    kw = {} if local_files_only is None else {"local_files_only": local_files_only}
    if where == "local directory":
        # a folder we wrote (the zoo) lists its files' checksums: a damaged weights file stops here
        verify_folder(source, fix=f"model {name!r}: the folder is damaged; write it again (the zoo: rerun "
                                  f"notebook 01 or delete the folder)")
    with _quiet_transformers():
        try:
            config = AutoConfig.from_pretrained(source, **kw)
        except (OSError, ValueError) as e:
            raise PolySpaceError(f"model {name!r}: cannot load {where} {source!r} "
                                 f"({str(e).splitlines()[0][:160]}); {hint}") from None
        arch = ARCHS.get(config.model_type)
        if arch is None:
            raise PolySpaceError(f"model {name!r}: {source!r} is a {config.model_type!r} checkpoint, not one of "
                                 f"the video backbones ({', '.join(ARCHS)})")
        from safetensors import SafetensorError

        try:
            model, info = _transformers_class(arch.model_class).from_pretrained(
                source, output_loading_info=True, **arch.load_kwargs, **kw)
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # the last: a damaged or foreign weights file
            raise PolySpaceError(f"model {name!r}: cannot load the weights of {source!r} "
                                 f"({str(e).splitlines()[0][:160]}); {hint}") from None
        missing = [k for k in info.get("missing_keys", []) if not k.startswith("predictor.")]
        if missing:
            raise PolySpaceError(f"model {name!r}: {source!r} has no weights for {len(missing)} encoder "
                                 f"parameters (e.g. {missing[0]}); it is not a {arch.model_class} checkpoint")
        try:
            processor = AutoVideoProcessor.from_pretrained(source, **kw)
        except (OSError, ValueError, KeyError):
            try:  # older checkpoints ship an image processor config only
                processor = AutoImageProcessor.from_pretrained(source, **kw)
            except (OSError, ValueError, KeyError):
                raise PolySpaceError(f"model {name!r}: {source!r} has no processor config "
                                     f"(video_preprocessor_config.json or preprocessor_config.json); "
                                     f"save the processor into it with processor.save_pretrained") from None
    return arch, model, processor


# weights file names a checkpoint folder or hub repo may hold (single file or sharded)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_source(spec: str) -> str:
    """Whether load_backbone(spec) can find the checkpoint, told without loading it; returns the
    source it will load. A tiny preset always can; a local folder must hold config.json and a
    weights file; a hub id (or registry key) needs its config from the HF cache or the hub, and,
    where HF_HUB_OFFLINE keeps the hub out of reach, its weights in the cache too. Anything else is
    the one-line PolySpaceError load_backbone would give later, after a dataset has been read."""
    import huggingface_hub
    from huggingface_hub import constants as hub

    name, source = parse_model_spec(spec)
    if source in TINY_PRESETS:
        return source
    source = ARCHS[source].hub_id if source in ARCHS else source
    folder = Path(source).expanduser()
    if folder.exists():
        present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        if "config.json" not in present or not present & set(WEIGHT_FILES):
            raise PolySpaceError(f"model {name!r}: the local folder {source} holds no config.json and weights; "
                                 f"save the model and its processor into it with save_pretrained")
        return source
    if not _looks_like_hub_id(source):
        raise PolySpaceError(f"model {name!r}: {source!r} is not a registry key ({model_choices()}), "
                             f"an existing local directory, or a hub id like org/name")
    from transformers import AutoConfig

    fix = (f"download it where there is network (`hf download {source}`) and pass the local directory, "
           f"or set HF_HOME to a cache that has it")
    with _quiet_transformers():
        try:
            AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise PolySpaceError(f"model {name!r}: cannot read the config of the hub id {source!r} "
                                 f"({str(e).splitlines()[0][:120]}); {fix}") from None
    # a cache may hold only a config (all that costs need); offline, the weights must be there too
    if hub.HF_HUB_OFFLINE and not any(isinstance(huggingface_hub.try_to_load_from_cache(source, f), str)
                                      for f in WEIGHT_FILES):
        raise PolySpaceError(f"model {name!r}: the HF cache has the config of {source!r} but not its weights "
                             f"(HF_HUB_OFFLINE=1 keeps the hub out of reach); {fix}")
    return source


def load_backbone(spec: str, *, frames: int = 16, device: str | torch.device = "cpu",
                  local_files_only: bool | None = None) -> VideoBackbone:
    """Load a backbone from a registry key, tiny preset, hub id or local directory.

    `spec` may be `NAME=SOURCE`. `frames` applies to architectures that take any frame count
    (V-JEPA 2); the others use their config's num_frames. `local_files_only=True` never touches
    the network (None follows HF_HUB_OFFLINE). Unloadable sources raise PolySpaceError.
    """
    name, source = parse_model_spec(spec)
    if source in TINY_PRESETS:
        model, processor = build_tiny(source)
        arch = ARCHS[TINY_PRESETS[source][0]]
    else:
        if source in ARCHS:
            source = ARCHS[source].hub_id
        elif not Path(source).exists() and not _looks_like_hub_id(source):
            raise PolySpaceError(f"model {name!r}: {source!r} is not a registry key ({model_choices()}), "
                                 f"an existing local directory, or a hub id like org/name")
        arch, model, processor = _load_pretrained(name, source, local_files_only)
    if not isinstance(frames, int) or frames < 1:
        raise PolySpaceError(f"frames {frames!r}: must be a positive integer")
    backbone = VideoBackbone(name, source, arch, model, processor, frames)
    return backbone.to(torch.device(device)).eval()


def load_backbones(specs: Sequence[str], **kwargs) -> list[VideoBackbone]:
    """load_backbone for each spec; names must be unique."""
    backbones = [load_backbone(s, **kwargs) for s in specs]
    names = [b.name for b in backbones]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PolySpaceError(f"models: the name {dupes[0]!r} is used twice; name them as NAME=SOURCE")
    return backbones
