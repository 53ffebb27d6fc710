"""Compare colorization methods on whole clips: global transfer, temporal only, exemplar only, fusion.

Every method gets the same inputs — the grey frames (L of the ground-truth video) and the clip's
reference — and returns ab for every frame; the output frame is L + ab, converted to uint8 RGB and
scored against the ground-truth frames (metrics.py). Methods:

    global    luminance-conditioned global colour transfer from the reference (baselines.py)
    temporal  the temporal branch alone: the reference's colours carried along the flow
    exemplar  the exemplar branch alone, frame by frame
    fusion    the full FusionSystem (both branches + fusion UNet)

Metrics (metrics.py): per frame PSNR, SSIM (skimage's 7x7 window), SSIM with the Gaussian window,
colourfulness and, when its weights are on this machine, LPIPS; per pair Lai et al.'s warp error
with a flow the methods do not use (metric_flow_backend); per clip CDC; per method FID over all
frames when its weights are there. Every figure is kept per clip, the unit the report's
intervals resample (frames of one clip are not independent): interval_table.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import PolySpaceError
from .baselines import colorize_global
from .data import ColorClip
from .lab import l_to_gray, lab_to_frames, merge_lab, normalize_ab, split_lab
from .metrics import cdc, colorfulness, input_flows, perceptual_scorers, psnr, ssim, ssim_gaussian, warp_error
from .propagation import TemporalPropagator, propagate_sequence
from .system import FusionSystem

METHODS = ("global", "temporal", "exemplar", "fusion")
METRIC_FLOWS = ("auto", "raft_large", "raft_small", "farneback", "dis")
# per-clip figures and whether higher is better (the interval table's order)
CLIP_METRICS = {"psnr": True, "ssim": True, "ssim_gaussian": True, "lpips": False, "cdc": False,
                "warp_error": False, "colorfulness": True}


def metric_flow_backend(methods_flow: str, choice: str = "auto", raft_weights: str | None = None,
                        device: torch.device | str = "cpu"):
    """The flow the warp error is measured with: an estimator the methods do not use.

    methods_flow: the temporal branch's backend name (flow.FlowBackend.name). choice: auto picks
    RAFT-large from `raft_weights` when given (and the methods do not use RAFT), else Farneback
    (or DIS when the methods use Farneback); raft_large / raft_small / farneback / dis ask for one,
    and asking for the methods' own estimator is an error (the metric would favour the branch that
    propagates along that flow). Returns a flow.FlowBackend."""
    from .flow import DISFlow, FarnebackFlow, RAFTFlow

    if choice not in METRIC_FLOWS:
        raise PolySpaceError(f"color_metric_flow={choice!r}: unknown; use one of {', '.join(METRIC_FLOWS)}")
    if choice == "auto":
        if raft_weights is not None and methods_flow != "raft":
            choice = "raft_large"
        else:
            choice = "dis" if methods_flow == "farneback" else "farneback"
    family = "raft" if choice.startswith("raft") else choice
    if family == methods_flow:
        raise PolySpaceError(f"color_metric_flow={choice}: the temporal branch uses {methods_flow} flow too, so the "
                             f"warp error would favour it; choose another estimator (or auto)")
    if family == "raft":
        if raft_weights is None:
            raise PolySpaceError(f"color_metric_flow={choice}: set color_metric_raft_weights to a local "
                                 f"torchvision {choice} state dict (nothing is downloaded)")
        return RAFTFlow(raft_weights, variant=choice, device=device)
    return FarnebackFlow() if family == "farneback" else DISFlow()


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
    """Per clip: per-frame PSNR/SSIM/Gaussian SSIM/colourfulness/LPIPS (LPIPS empty when skipped),
    per-pair warp error, one CDC; seconds and frames of colorization; FID over all clips (None
    when skipped)."""
    psnr: list[list[float]] = field(default_factory=list)
    ssim: list[list[float]] = field(default_factory=list)
    ssim_gaussian: list[list[float]] = field(default_factory=list)
    lpips: list[list[float]] = field(default_factory=list)
    colorfulness: list[list[float]] = field(default_factory=list)
    warp_error: list[list[float]] = field(default_factory=list)
    cdc: list[float] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0
    fid: float | None = None

    def per_clip(self, metric: str) -> np.ndarray:
        """One value per clip: the mean over its frames (pairs for warp error); CDC as is."""
        values = getattr(self, metric)
        if metric == "cdc":
            return np.asarray(values, dtype=np.float64)
        return np.array([np.mean(v) for v in values], dtype=np.float64)

    def summary(self) -> dict[str, float]:
        """Means over all frames (PSNR, SSIMs, LPIPS, colourfulness), over clips (warp error, CDC),
        FID (NaN when skipped) and frames per second."""
        flat = lambda xs: float(np.mean([v for x in xs for v in x])) if any(xs) else float("nan")  # noqa: E731
        return {"psnr": flat(self.psnr), "ssim": flat(self.ssim), "ssim_gaussian": flat(self.ssim_gaussian),
                "lpips": flat(self.lpips), "fid": float("nan") if self.fid is None else self.fid,
                "cdc": float(np.mean(self.cdc)), "warp_error": float(np.mean(self.per_clip("warp_error"))),
                "colorfulness": flat(self.colorfulness), "fps": self.frames / max(self.seconds, 1e-9)}


def evaluate_methods(clips: list[ColorClip], system: FusionSystem | None, methods=METHODS,
                     device: torch.device | str = "cpu", keep_outputs: int = 2, progress: bool = True,
                     metric_flow=None, perceptual: bool = True, fid_weights: str | None = None) -> dict:
    """Run every method on every clip and score it.

    metric_flow: the flow backend of the warp error (default: metric_flow_backend for the system's
    flow, auto). perceptual: LPIPS and FID where their weights are on this machine (else a
    recorded skip); fid_weights: a local Inception file for FID.
    Returns {'results': {method: MethodResult}, 'summary': {method: {metric: value}},
    'ground_truth_colorfulness': float, 'ground_truth_cdc': float, 'clip_ids': [...],
    'first_scored_frame': int (clip.score_from; 1 under the first-frame protocol),
    'metric_flow': its description, 'skipped': {metric: one-line reason}, 'outputs': {clip_id:
    {method: frames uint8}} for the first `keep_outputs` clips (for frame strips)}."""
    from tqdm.auto import tqdm

    if not clips:
        raise PolySpaceError("evaluate: no clips to evaluate")
    if metric_flow is None:
        methods_flow = system.propagator.backend.name if system is not None else "none"
        metric_flow = metric_flow_backend(methods_flow, device=device)
    scorers, skipped = perceptual_scorers(device, fid_weights) if perceptual else ({}, {})
    results = {m: MethodResult() for m in methods}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    gt_colourfulness = []
    for k, clip in enumerate(tqdm(clips, desc="evaluate", disable=not progress)):
        scored = clip.frames[clip.score_from:]
        gt_colourfulness += [colorfulness(f) for f in scored]
        flows = input_flows(clip.grey[clip.score_from:], metric_flow) if len(scored) > 1 else None
        if "fid" in scorers:
            scorers["fid"].add_real(scored)
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
            # scored frames: from clip.score_from (1 when frame 0 is the reference itself)
            p_s, g_s = pred[clip.score_from:], clip.frames[clip.score_from:]
            r.psnr.append([psnr(p, g) for p, g in zip(p_s, g_s)])
            r.ssim.append([ssim(p, g) for p, g in zip(p_s, g_s)])
            r.ssim_gaussian.append([ssim_gaussian(p, g) for p, g in zip(p_s, g_s)])
            r.colorfulness.append([colorfulness(p) for p in p_s])
            if flows is not None:
                r.warp_error.append(warp_error(p_s, g_s, flows=flows)[1])
                r.cdc.append(cdc(p_s))
            if "lpips" in scorers:
                r.lpips.append(scorers["lpips"].frames(p_s, g_s))
            if "fid" in scorers:
                scorers["fid"].add_fake(m, p_s)
            if k < keep_outputs:
                outputs.setdefault(clip.id, {})[m] = pred
        if k < keep_outputs:
            outputs[clip.id]["ground_truth"] = clip.frames
            outputs[clip.id]["grey"] = np.repeat(clip.grey[..., None], 3, axis=-1)
            outputs[clip.id]["reference"] = clip.reference[None]
    if "fid" in scorers:
        for m in methods:
            results[m].fid = scorers["fid"].score(m)
    return {"results": results, "summary": {m: r.summary() for m, r in results.items()},
            "ground_truth_colorfulness": float(np.mean(gt_colourfulness)),
            "ground_truth_cdc": float(np.mean([cdc(c.frames[c.score_from:]) for c in clips
                                              if len(c.frames) - c.score_from > 1] or [np.nan])),
            "clip_ids": [c.id for c in clips], "first_scored_frame": min(c.score_from for c in clips),
            "metric_flow": metric_flow.describe(), "skipped": skipped,
            "outputs": outputs}


def summary_table(evaluation: dict):
    """A pandas DataFrame: one row per method, columns PSNR, SSIM (7x7), SSIM (Gaussian), LPIPS and
    FID (when measured), CDC, warp error, colourfulness, fps."""
    import pandas as pd

    table = pd.DataFrame(evaluation["summary"]).T
    table.index.name = "method"
    columns = ["psnr", "ssim", "ssim_gaussian", "lpips", "fid", "cdc", "warp_error", "colorfulness", "fps"]
    table = table[[c for c in columns if not table[c].isna().all()]]
    if evaluation.get("summary_std"):  # several training seeds: the seeded methods' std beside their means
        for metric in ("psnr", "ssim"):
            table[f"{metric}_seed_std"] = [evaluation["summary_std"].get(m, {}).get(metric, float("nan"))
                                           for m in table.index]
    return table


def clip_values(evaluation: dict, metric: str) -> dict[str, np.ndarray]:
    """{method: one value of `metric` per clip} (the same clips, in the same order, for every method);
    for an evaluation over several training seeds (combine_seeds) each clip's value is its mean
    over the seeds."""
    values = {m: r.per_clip(metric) for m, r in evaluation["results"].items()}
    for m, runs in evaluation.get("seed_results", {}).items():
        values[m] = np.mean([r.per_clip(metric) for r in runs.values()], axis=0)
    return values


SEEDED_METHODS = ("exemplar", "fusion")  # the methods training changes; global and temporal have no weights


def combine_seeds(evaluations: Mapping[int, dict]) -> dict:
    """One evaluation from the same test clips scored with systems trained under several seeds
    (seed -> evaluate_methods result; seeds after the first may hold only SEEDED_METHODS, the
    others do not depend on training): the first seed's evaluation (its outputs and per-frame
    results for the figures) with `seeds`, `seed_results` {method: {seed: MethodResult}} (what
    clip_values averages per clip), `summary` the mean over seeds and `summary_std` the std over
    seeds of each figure of the seeded methods."""
    seeds = list(evaluations)
    first = evaluations[seeds[0]]
    for seed, e in evaluations.items():
        if e["clip_ids"] != first["clip_ids"]:
            raise PolySpaceError(f"seed {seed}: scored other clips than seed {seeds[0]}; "
                                 "seeds are combined clip by clip")
    combined = {**first, "seeds": seeds, "summary": dict(first["summary"]), "summary_std": {}, "seed_results": {}}
    if len(seeds) < 2:
        return combined
    for m in SEEDED_METHODS:
        if m not in first["results"] or any(m not in e["results"] for e in evaluations.values()):
            continue
        combined["seed_results"][m] = {seed: e["results"][m] for seed, e in evaluations.items()}
        rows = [e["results"][m].summary() for e in evaluations.values()]
        combined["summary"][m] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        combined["summary_std"][m] = {k: float(np.std([r[k] for r in rows], ddof=1)) for k in rows[0]}
    return combined


def interval_table(evaluation: dict, metrics=("psnr", "ssim"), against: str = "fusion"):
    """Per method and metric: the mean over clips with its 95% bootstrap interval over clips, and
    the paired difference `against` - method with its paired bootstrap interval (clips resampled,
    both methods scored on the drawn clips; stats.py). A DataFrame, one row per method; needs at
    least 2 clips."""
    import pandas as pd

    from ..stats import bootstrap_interval, paired_difference

    rows = []
    for metric in metrics:
        values = clip_values(evaluation, metric)
        if any(len(v) < 2 for v in values.values()):
            raise PolySpaceError(f"interval table: {metric} has fewer than 2 clips; intervals need at least 2")
    for m in evaluation["results"]:
        row: dict[str, object] = {"method": m}
        for metric in metrics:
            values = clip_values(evaluation, metric)
            ci = bootstrap_interval(values[m], name=f"{metric} {m}")
            row[metric] = round(ci.value, 4)
            row[f"{metric} 95% CI"] = f"[{ci.low:.4f}, {ci.high:.4f}]"
            if against in values and m != against:
                d = paired_difference(values[against], values[m], name=f"{metric} {against} - {m}")
                row[f"{against} - method ({metric})"] = round(d.value, 4)
                row[f"{against} - method 95% CI ({metric})"] = f"[{d.low:.4f}, {d.high:.4f}]"
            else:
                row[f"{against} - method ({metric})"] = "—"
                row[f"{against} - method 95% CI ({metric})"] = "—"
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    table.attrs["clips"] = len(next(iter(evaluation["results"].values())).psnr)
    return table


def per_frame_curves(evaluation: dict, metric: str = "psnr"):
    """A long DataFrame (method, frame, value) of a per-frame metric averaged over clips."""
    import pandas as pd

    rows = []
    for m, r in evaluation["results"].items():
        values = getattr(r, metric)
        length = min(len(v) for v in values)
        mean = np.mean([v[:length] for v in values], axis=0)
        # frame numbers of the clip: scoring may start after the reference frame; warp error t
        # compares frame t with t+1 (Lai et al.: t+1 warped back onto t)
        offset = evaluation.get("first_scored_frame", 0)
        rows += [{"method": m, "frame": t + offset, metric: float(v)} for t, v in enumerate(mean)]
    return pd.DataFrame(rows)


def method_metrics(evaluation: dict) -> dict[str, float]:
    """Flat figures per method of an evaluate_methods result: psnr_/ssim_/cdc_/warp_error_/
    colorfulness_<method>, fps_fusion, whether fusion beats every other method on PSNR and is no
    worse than exemplar on CDC, and the ground truth's colourfulness and CDC."""
    summary = evaluation["summary"]
    out: dict[str, float] = {}
    for m, s in summary.items():
        for key in ("psnr", "ssim", "ssim_gaussian", "lpips", "fid", "cdc", "warp_error", "colorfulness"):
            if not np.isnan(s[key]):
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
