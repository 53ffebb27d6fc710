"""Compare colorization methods on whole clips: global transfer, temporal only, exemplar only, fusion.

Every method gets the same inputs — the grey frames (L of the ground-truth video) and the clip's
reference — and returns ab for every frame; the output frame is L + ab, converted to uint8 RGB and
scored against the ground-truth frames (metrics.py). Methods:

    global    luminance-conditioned global colour transfer from the reference (baselines.py)
    temporal  the temporal branch alone: the reference's colours carried along the flow
    exemplar  the exemplar branch alone, frame by frame
    fusion    the full FusionSystem (both branches + fusion UNet)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import PolySpaceError
from .baselines import colorize_global
from .data import ColorClip
from .lab import l_to_gray, lab_to_frames, merge_lab, normalize_ab, split_lab
from .metrics import cdc, colorfulness, psnr, ssim, warp_error
from .propagation import TemporalPropagator, propagate_sequence
from .system import FusionSystem

METHODS = ("global", "temporal", "exemplar", "fusion")


@torch.no_grad()
def colorize_clip(method: str, clip: ColorClip, system: FusionSystem | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised ab (T, 2, H, W) for `clip` by `method` (see the module docstring)."""
    lab = clip.lab.to(device)
    l, _ = split_lab(lab)
    ref_l, ref_ab = split_lab(clip.ref_lab[None].to(device))
    if method == "global":
        return normalize_ab(colorize_global(clip.lab[:, :1], clip.ref_lab)).to(device)
    if system is None:
        raise PolySpaceError(f"method {method!r} needs a FusionSystem (trained exemplar branch / flow backend)")
    if method == "temporal":
        prop = TemporalPropagator(system.propagator.backend, memory_size=system.propagator.memory_size,
                                  decay=system.propagator.decay)
        ab, _ = propagate_sequence(prop, clip.grey[None], l_to_gray(ref_l), ref_ab)
        return ab[0]
    if method == "exemplar":
        system.exemplar.eval()
        ref = system.exemplar.encode_reference(ref_l.expand(len(l), -1, -1, -1), ref_ab.expand(len(l), -1, -1, -1))
        return system.exemplar(l, reference=ref)["ab"]
    if method == "fusion":
        system.eval()
        system.reset_memory()
        return system(lab[None], clip.grey[None], clip.ref_lab[None].to(device))[0]
    raise PolySpaceError(f"method {method!r}: unknown; use one of {', '.join(METHODS)}")


def to_frames(clip: ColorClip, ab: torch.Tensor) -> np.ndarray:
    """uint8 RGB (T, H, W, 3) from the clip's L and normalised ab (T, 2, H, W)."""
    l, _ = split_lab(clip.lab)
    return lab_to_frames(merge_lab(l, ab.detach().float().cpu()))


@dataclass
class MethodResult:
    """Per clip: per-frame PSNR/SSIM/colourfulness, per-pair warp error, one CDC, seconds."""
    psnr: list[list[float]] = field(default_factory=list)
    ssim: list[list[float]] = field(default_factory=list)
    colorfulness: list[list[float]] = field(default_factory=list)
    warp_error: list[list[float]] = field(default_factory=list)
    cdc: list[float] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0

    def summary(self) -> dict[str, float]:
        flat = lambda xs: float(np.mean([v for x in xs for v in x]))  # noqa: E731
        return {"psnr": flat(self.psnr), "ssim": flat(self.ssim), "cdc": float(np.mean(self.cdc)),
                "warp_error": float(np.mean([np.mean(x) for x in self.warp_error])),
                "colorfulness": flat(self.colorfulness), "fps": self.frames / max(self.seconds, 1e-9)}


def evaluate_methods(clips: list[ColorClip], system: FusionSystem | None, methods=METHODS,
                     device: torch.device | str = "cpu", keep_outputs: int = 2,
                     progress: bool = True) -> dict:
    """Run every method on every clip and score it.

    Returns {'results': {method: MethodResult}, 'summary': {method: {metric: value}},
    'ground_truth_colorfulness': float, 'outputs': {clip_id: {method: frames uint8}} for the first
    `keep_outputs` clips (for frame strips)}."""
    from tqdm.auto import tqdm

    from .flow import DISFlow

    results = {m: MethodResult() for m in methods}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    gt_colourfulness = []
    metric_flow = DISFlow()  # the warp-error flow: fixed, whatever backend the system uses
    for k, clip in enumerate(tqdm(clips, desc="evaluate", disable=not progress)):
        gt_colourfulness += [colorfulness(f) for f in clip.frames]
        for m in methods:
            start = time.perf_counter()
            ab = colorize_clip(m, clip, system, device)
            if isinstance(device, torch.device) and device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            pred = to_frames(clip, ab)
            r = results[m]
            r.seconds += seconds
            r.frames += len(pred)
            r.psnr.append([psnr(p, g) for p, g in zip(pred, clip.frames)])
            r.ssim.append([ssim(p, g) for p, g in zip(pred, clip.frames)])
            r.colorfulness.append([colorfulness(p) for p in pred])
            r.warp_error.append(warp_error(pred, clip.frames, metric_flow)[1])
            r.cdc.append(cdc(pred))
            if k < keep_outputs:
                outputs.setdefault(clip.id, {})[m] = pred
        if k < keep_outputs:
            outputs[clip.id]["ground_truth"] = clip.frames
            outputs[clip.id]["grey"] = np.repeat(clip.grey[..., None], 3, axis=-1)
            outputs[clip.id]["reference"] = clip.reference[None]
    return {"results": results, "summary": {m: r.summary() for m, r in results.items()},
            "ground_truth_colorfulness": float(np.mean(gt_colourfulness)),
            "ground_truth_cdc": float(np.mean([cdc(c.frames) for c in clips])), "outputs": outputs}


def summary_table(evaluation: dict):
    """A pandas DataFrame: one row per method, columns PSNR, SSIM, CDC, warp error, colourfulness, fps."""
    import pandas as pd

    table = pd.DataFrame(evaluation["summary"]).T
    table.index.name = "method"
    return table[["psnr", "ssim", "cdc", "warp_error", "colorfulness", "fps"]]


def per_frame_curves(evaluation: dict, metric: str = "psnr"):
    """A long DataFrame (method, frame, value) of a per-frame metric averaged over clips."""
    import pandas as pd

    rows = []
    for m, r in evaluation["results"].items():
        values = getattr(r, metric)
        length = min(len(v) for v in values)
        mean = np.mean([v[:length] for v in values], axis=0)
        offset = 1 if metric == "warp_error" else 0  # warp error t compares frame t+1 with t
        rows += [{"method": m, "frame": t + offset, metric: float(v)} for t, v in enumerate(mean)]
    return pd.DataFrame(rows)


def method_metrics(evaluation: dict) -> dict[str, float]:
    """Flat figures per method of an evaluate_methods result: psnr_/ssim_/cdc_/warp_error_/
    colorfulness_<method>, fps_fusion, whether fusion beats every other method on PSNR and is no
    worse than exemplar on CDC, and the ground truth's colourfulness and CDC."""
    summary = evaluation["summary"]
    out: dict[str, float] = {}
    for m, s in summary.items():
        for key in ("psnr", "ssim", "cdc", "warp_error", "colorfulness"):
            out[f"{key}_{m}"] = s[key]
    if "fusion" in summary:
        out["fps_fusion"] = summary["fusion"]["fps"]
        others = [m for m in summary if m != "fusion"]
        out["fusion_best_psnr"] = all(summary["fusion"]["psnr"] > summary[m]["psnr"] for m in others)
        if "exemplar" in summary:
            out["fusion_cdc_not_worse_than_exemplar"] = summary["fusion"]["cdc"] <= summary["exemplar"]["cdc"]
    out["colorfulness_ground_truth"] = evaluation["ground_truth_colorfulness"]
    out["cdc_ground_truth"] = evaluation["ground_truth_cdc"]
    return out
