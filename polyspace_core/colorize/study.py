"""What notebook 08 calls, one function per cell: SynthColor -> training -> the method comparison.

    color = data(ws)                        # SynthColor at color_root (generated once), in memory
    flow = flow_backend(ws)                 # color_flow + its weights
    run = train(ws, color, flow)            # phases A and B into ws.run_dir (resumed / reused)
    test = test_set(ws, color)              # SynthColor test, or DAVIS / a folder of videos (first-frame reference)
    evaluation = evaluate(ws, run, test)    # global / temporal / exemplar / fusion on it
    summary_table(evaluation); interval_table(evaluation)
    ws.write_metrics(stage_metrics(ws, evaluation, run, test))

The entry points take the workspace first and read the color_* parameters from it; what they call
takes explicit arguments (prepare_data, train_run, evaluate_run), which the tests use directly.

Selection and reporting: both training phases keep the epoch with the lowest validation L1
(train.py); the test split is used once, by `evaluate`. The checkpoint lands in
`<run dir>/checkpoint` (what `polyspace colorize --checkpoint` takes); `<run dir>/settings.json`
records the data and training settings it was made with, and a run dir holding a checkpoint made
with other settings is announced and cleared before training again, so a reused checkpoint
always matches the parameters shown.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PolySpaceError
from ..seeding import training_seeds
from ..stats import Claim, bootstrap_interval, paired_difference
from .data import ColorClip, load_color_clips, load_sequence_clips
from .flow import FlowBackend, build_flow_backend
from .system import FusionSystem
from .train import TrainConfig, claim_run_folder, train_colorization

# ----------------------------------------------------------------------------- data

@dataclass
class ColorData:
    """A SynthColor set decoded into memory: clips per split plus what the index says about them."""

    root: Path
    params: dict[str, Any]
    train: list[ColorClip]
    val: list[ColorClip]
    test: list[ColorClip]
    index: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    def split(self, name: str) -> list[ColorClip]:
        return {"train": self.train, "validation": self.val, "test": self.test}[name]

    def card(self):
        """One row per split: clips, frames, size, source photos, reference kinds, object kinds."""
        import pandas as pd

        rows = []
        for split, entries in self.index["splits"].items():
            refs = Counter(e["reference_kind"] for e in entries)
            objects = Counter(k for e in entries for k in e["objects"])
            rows.append({"split": split, "clips": len(entries), "frames": self.params["frames"],
                         "size": f"{self.params['size']}x{self.params['size']}",
                         "photos": ", ".join(sorted({e["source"] for e in entries})),
                         "references": ", ".join(f"{k} {v}" for k, v in sorted(refs.items())),
                         "objects": ", ".join(f"{k} {v}" for k, v in sorted(objects.items()))})
        return pd.DataFrame(rows).set_index("split")

    def _repr_html_(self) -> str:
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return (f"<p>SynthColor at <code>{html.escape(str(self.root))}</code> ({html.escape(timing)})</p>"
                + self.card().to_html())

    def __repr__(self) -> str:
        return f"SynthColor at {self.root}\n{self.card().to_string()}"


def prepare_data(root: str | Path, clips: int = 40, frames: int = 16, size: int = 64, seed: int = 0,
                 progress: bool = True, test_clips: int | None = None) -> ColorData:
    """Generate SynthColor under `root` unless it is there already (same parameters), then decode
    its three splits into memory (uint8 frames + Lab tensors, see data.py). test_clips: the test
    split's size (none: 20% of `clips`)."""
    from ..datasets.synthcolor import generate_synthcolor, load_synthcolor_index

    root = Path(root)
    start = time.perf_counter()
    generate_synthcolor(root, clips=clips, frames=frames, size=size, seed=seed, progress=progress,
                        test_clips=test_clips)
    seconds = {"generate": time.perf_counter() - start}
    start = time.perf_counter()
    splits = {s: load_color_clips(root, s, progress=progress) for s in ("train", "validation", "test")}
    seconds["decode"] = time.perf_counter() - start
    index = load_synthcolor_index(root)
    return ColorData(root, dict(index["params"]), splits["train"], splits["validation"], splits["test"],
                     index, seconds)


def data(ws, progress: bool = True) -> ColorData:
    """The stage's SynthColor set: prepare_data with the notebook's color_* parameters."""
    p = ws.p
    return prepare_data(ws.path(p.color_root), clips=p.color_clips, frames=p.color_frames, size=p.color_size,
                        seed=p.color_synth_seed, progress=progress, test_clips=p.color_test_clips)


# ----------------------------------------------------------------------------- flow

def flow_backend(ws) -> FlowBackend:
    """The temporal branch's flow backend named by color_flow (raft / memflow need their local
    weights: color_raft_weights, color_memflow_path + color_memflow_ckpt)."""
    p = ws.p
    return build_flow_backend(p.color_flow, raft_weights=_opt(p.color_raft_weights),
                              memflow_path=_opt(p.color_memflow_path), memflow_ckpt=_opt(p.color_memflow_ckpt),
                              device=ws.device)


def _opt(path) -> str | None:
    return None if path is None else str(path)


# ----------------------------------------------------------------------------- training

def train_config(ws, seed: int | None = None) -> TrainConfig:
    """The notebook's color_* training parameters as a TrainConfig (seeded with `seed`, default the
    first of `seeds`)."""
    p = ws.p
    return TrainConfig(exemplar_epochs=p.color_exemplar_epochs, fusion_epochs=p.color_fusion_epochs,
                       batch_size=p.color_batch, frames_per_clip=p.color_frames_per_clip,
                       fusion_batch_size=p.color_fusion_batch, seq_len=p.color_seq_len,
                       lr_exemplar=p.color_lr_exemplar, lr_exemplar_finetune=p.color_lr_exemplar_finetune,
                       lr_fusion=p.color_lr_fusion, warp_weight=p.color_warp_weight,
                       temporal_weight=p.color_temporal_weight, mixed_precision=p.color_mixed_precision,
                       seed=training_seeds(p.seeds, ws.seed)[0] if seed is None else seed)


@dataclass
class ColorRun:
    """A trained (or reused) system with its training record."""

    system: FusionSystem
    history: list[dict[str, Any]]
    out_dir: Path
    settings: dict[str, Any]
    seconds: float          # this call (≈0 when a finished checkpoint was reused)
    reused: bool
    device: torch.device
    loaded_from: Path | None = None   # color_checkpoint: a system trained elsewhere, scored as it is

    @property
    def checkpoint(self) -> Path:
        return self.loaded_from or self.out_dir / "checkpoint"

    def best(self, phase: str) -> dict[str, Any] | None:
        rows = [h for h in self.history if h["phase"] == phase]
        return min(rows, key=lambda h: h["val_l1"]) if rows else None

    def summary(self):
        """One row per phase: epochs, best epoch and its validation L1, training seconds."""
        import pandas as pd

        rows = []
        for phase in ("exemplar", "fusion"):
            hist = [h for h in self.history if h["phase"] == phase]
            best = self.best(phase)
            rows.append({"phase": phase, "epochs": len(hist), "best_epoch": best["epoch"] if best else None,
                         "best_val_l1": best["val_l1"] if best else None,
                         "train_seconds": sum(h["seconds"] for h in hist)})
        return pd.DataFrame(rows).set_index("phase")

    def _repr_html_(self) -> str:
        how = ("loaded, not trained here (color_checkpoint)" if self.loaded_from else
               "reused the finished checkpoint" if self.reused else f"trained in {self.seconds:.1f} s")
        return (f"<p>checkpoint <code>{html.escape(str(self.checkpoint))}</code> ({how})</p>"
                + self.summary().round(4).to_html())


def _settings(data: ColorData, cfg: TrainConfig, flow: FlowBackend, swin_checkpoint, exemplar_checkpoint,
              shared_phase_a=None) -> dict:
    # what training reads: the train/validation splits (the test split's size does not change them)
    params = {k: v for k, v in data.params.items() if k != "test_clips"}
    return {"data": {"root": str(data.root), "version": data.index.get("version"), **params},
            "train": asdict(cfg), "flow": flow.describe(),
            "swin_checkpoint": _opt(swin_checkpoint), "exemplar_checkpoint": _opt(exemplar_checkpoint),
            **({"shared_phase_a": str(shared_phase_a)} if shared_phase_a is not None else {})}


def train(ws, data: ColorData, flow: FlowBackend, progress: bool = True) -> ColorRun:
    """Phases A and B (train.py) on data.train, selected on data.val, into ws.run_dir, with the
    notebook's training parameters (train_config), on ws.device. With color_checkpoint set, the
    FusionSystem folder there (trained elsewhere, e.g. by `polyspace train-color`) is loaded with
    the notebook's flow and nothing is trained (load_run)."""
    p = ws.p
    if _opt(p.color_checkpoint) is not None:
        return load_run(ws.path(p.color_checkpoint), flow, ws.device)
    return train_run(ws.run_dir, data, flow, train_config(ws), ws.device, swin_checkpoint=p.color_swin_checkpoint,
                     exemplar_checkpoint=p.color_exemplar_checkpoint, progress=progress)


def train_seeds(ws, data: ColorData, flow: FlowBackend, run: ColorRun, progress: bool = True) -> dict[int, ColorRun]:
    """Phase B (the colorization fusion) again under every seed of `seeds` after the first, from
    `run`'s phase A, each into `<run dir>/seed<N>/`: {seed: ColorRun}, `run` first. With
    color_exemplar_checkpoint (no phase A of our own) the seeds start from that checkpoint; with
    color_checkpoint (a system trained elsewhere) nothing is trained and `run` is the only one."""
    p = ws.p
    seeds = training_seeds(p.seeds, ws.seed)
    runs = {seeds[0]: run}
    if run.loaded_from is not None:
        if len(seeds) > 1:
            print(f"color_checkpoint {run.loaded_from}: scored as it is, so the further seeds {seeds[1:]} are not run")
        return runs
    phase_a = None if p.color_exemplar_checkpoint else run.out_dir / "exemplar_phase"
    for seed in seeds[1:]:
        runs[seed] = train_run(ws.run_dir / f"seed{seed}", data, flow, train_config(ws, seed), ws.device,
                               swin_checkpoint=p.color_swin_checkpoint, exemplar_checkpoint=p.color_exemplar_checkpoint,
                               shared_phase_a=phase_a, progress=progress)
    return runs


def learning_rates(ws):
    """The notebook's learning rates next to the seed's (system.RECOMMENDED_LR) and their ratio:
    the demo trains its small nets from scratch on SynthColor and uses larger rates than the
    seed's guide, which the report states rather than hides."""
    import pandas as pd

    from .system import RECOMMENDED_LR

    p = ws.p
    seed_lr = RECOMMENDED_LR
    rows = [("phase A: exemplar branch from scratch", p.color_lr_exemplar, seed_lr["scratch"]["exemplar"]),
            ("phase B: exemplar part fine-tuned", p.color_lr_exemplar_finetune, seed_lr["pretrained"]["exemplar"]),
            ("phase B: fusion UNet", p.color_lr_fusion, seed_lr["scratch"]["fusion"])]
    return pd.DataFrame([{"what": w, "this run": ours, "seed's guide": seed, "ratio": ours / seed}
                         for w, ours, seed in rows]).set_index("what")


def seeds_summary(runs: dict[int, ColorRun]):
    """Per seed: phase B's best epoch and validation L1, its training seconds; then mean and std."""
    import pandas as pd

    rows = []
    for seed, run in runs.items():
        best = run.best("fusion")
        rows.append({"seed": seed, "best_epoch": best["epoch"] if best else None,
                     "best_val_l1": best["val_l1"] if best else None,
                     "train_seconds": sum(h["seconds"] for h in run.history if h["phase"] == "fusion")})
    table = pd.DataFrame(rows).set_index("seed")
    if len(rows) > 1:
        table.loc["mean"] = table.mean()
        table.loc["std"] = table.std(ddof=1)
    return table


def train_run(out_dir: str | Path, data: ColorData, flow: FlowBackend, cfg: TrainConfig,
              device: torch.device | str = "cpu", swin_checkpoint=None, exemplar_checkpoint=None,
              progress: bool = True, shared_phase_a: str | Path | None = None) -> ColorRun:
    """train_colorization into out_dir, after checking that what is there was made with the same
    settings (else it is announced and cleared). Returns the trained system (eval mode)."""
    out = Path(out_dir)
    settings = _settings(data, cfg, flow, swin_checkpoint, exemplar_checkpoint, shared_phase_a)
    reused = claim_run_folder(out, settings, replace=True)  # the notebook's own folder: a changed setting retrains
    device = torch.device(device)
    start = time.perf_counter()
    system, history = train_colorization(data.train, data.val, out, cfg, device, flow=flow,
                                         swin_checkpoint=_opt(swin_checkpoint),
                                         exemplar_checkpoint=_opt(exemplar_checkpoint), progress=progress,
                                         shared_phase_a=shared_phase_a)
    return ColorRun(system.eval(), history, out, settings, time.perf_counter() - start, reused, device)


def load_run(folder: str | Path, flow: FlowBackend, device: torch.device | str = "cpu") -> ColorRun:
    """A FusionSystem folder trained elsewhere as a ColorRun, with `flow` as its temporal branch's
    backend; its history from the run folder's history.json when it sits in one (the layout of
    `polyspace train-color --save_dir` and of notebook 08's run folder), else none."""
    from ..io import read_json
    from .system import FusionSystem

    folder = Path(folder)
    device = torch.device(device)
    system = FusionSystem.from_pretrained(folder, flow=flow, map_location=device).to(device).eval()
    record = folder.parent / "history.json"
    history = read_json(record)["epochs"] if record.is_file() else []
    settings = {"color_checkpoint": str(folder), "flow": flow.describe(), "trained_size": system.trained_size}
    return ColorRun(system, history, folder.parent, settings, 0.0, True, device, loaded_from=folder)


# ----------------------------------------------------------------------------- evaluation

@dataclass
class TestSet:
    """What the methods are scored on: SynthColor's test split (its own references) or real colour
    sequences (DAVIS, a folder of videos) under the first-frame-reference protocol."""

    dataset: str
    root: Path
    clips: list[ColorClip]
    protocol: str
    seconds: float = 0.0

    def card(self):
        """One row per clip: frames, size, reference kind."""
        import pandas as pd

        return pd.DataFrame([{"clip": c.id, "frames": len(c.frames), "size": f"{c.frames.shape[2]}x{c.frames.shape[1]}",
                              "reference": c.reference_kind} for c in self.clips]).set_index("clip")

    def _repr_html_(self) -> str:
        card = self.card()
        frames = int(card["frames"].sum())
        head = (f"<p>{html.escape(self.dataset)} at <code>{html.escape(str(self.root))}</code>: {len(self.clips)} "
                f"clips, {frames} frames; {html.escape(self.protocol)} ({self.seconds:.1f} s to load)</p>")
        return head + (card.to_html() if len(card) <= 12 else card.head(12).to_html() + "<p>...</p>")


def test_set(ws, data: ColorData | None = None, progress: bool = True) -> TestSet:
    """The clips notebook 08 scores: color_eval_dataset synthcolor -> data.test (used here once);
    davis / videos -> the sequences at color_eval_root (color_eval_split, color_eval_sequences), the
    first color_eval_frames frames at a color_eval_size short side, each with its first frame as
    the reference."""
    p = ws.p
    if p.color_eval_dataset == "synthcolor":
        if data is None:
            raise PolySpaceError("test_set: color_eval_dataset synthcolor needs the SynthColor data (study.data)")
        return TestSet("SynthColor test", data.root, data.test,
                       "each clip's own reference (first frame or separate view)")
    if p.color_eval_root is None:
        raise PolySpaceError(f"color_eval_root: not set; point it at the {p.color_eval_dataset} folder "
                             f"(DAVIS: the one holding JPEGImages/480p)")
    options = {"split": p.color_eval_split} if p.color_eval_dataset == "davis" else {}
    return load_test_set(p.color_eval_dataset, ws.path(p.color_eval_root), p.color_eval_size, p.color_eval_frames,
                         list(p.color_eval_sequences) or None, progress=progress, **options)


def load_test_set(dataset: str, root: str | Path, size: int, max_frames: int | None = None,
                  sequences: list[str] | None = None, progress: bool = True, **options) -> TestSet:
    """Real colour sequences (data.load_sequence_clips) as a TestSet; a missing root is a one-line
    error naming color_eval_root."""
    start = time.perf_counter()
    clips = load_sequence_clips(dataset, root, size, max_frames, sequences, key="color_eval_root",
                                progress=progress, **options)
    return TestSet(dataset, Path(root), clips, f"first-frame reference, short side {size} px",
                   time.perf_counter() - start)


def evaluate(ws, run: ColorRun, test: TestSet | ColorData, progress: bool = True,
             runs: dict[int, ColorRun] | None = None) -> dict:
    """Every method on the test set (SynthColor test is used here once), keeping the outputs of the
    first color_strip_clips clips for the frame strips; the warp error's flow from
    color_metric_flow (an estimator the methods do not use); LPIPS / FID where their weights are on
    this machine. See evaluate.evaluate_methods for what comes back. runs (train_seeds): the
    exemplar and fusion methods are scored with every seed's system too and combined clip by clip
    (evaluate.combine_seeds: means, std over seeds, per-clip values averaged over the seeds)."""
    from .evaluate import SEEDED_METHODS, combine_seeds

    p = ws.p
    if isinstance(test, ColorData):
        test = test_set(ws, test)
    kw = dict(progress=progress, metric_flow=p.color_metric_flow,
              metric_raft_weights=_opt(p.color_metric_raft_weights), fid_weights=_opt(p.color_fid_weights))
    first = evaluate_run(run, test.clips, keep_outputs=p.color_strip_clips, **kw)
    if not runs or len(runs) < 2:
        return first
    evaluations = {seed: first if other is run else evaluate_run(other, test.clips, keep_outputs=0,
                                                                 methods=SEEDED_METHODS, **kw)
                   for seed, other in runs.items()}
    return combine_seeds(evaluations)


def evaluate_run(run: ColorRun, clips: list[ColorClip], keep_outputs: int = 2, progress: bool = True,
                 metric_flow: str = "auto", metric_raft_weights: str | None = None,
                 fid_weights: str | None = None, perceptual: bool = True, methods=None) -> dict:
    """Every method (global, temporal, exemplar, fusion) on `clips` with the run's system, on its
    device (or only `methods`), the warp error measured with evaluate.metric_flow_backend(run's
    flow, metric_flow); see evaluate.evaluate_methods for what comes back."""
    from .evaluate import METHODS, evaluate_methods, metric_flow_backend

    if not clips:
        raise PolySpaceError("evaluate: no clips to evaluate; the split is empty")
    backend = metric_flow_backend(run.system.propagator.backend.name, metric_flow, metric_raft_weights, run.device)
    return evaluate_methods(clips, run.system, methods=methods or METHODS, device=run.device,
                            keep_outputs=keep_outputs, progress=progress, metric_flow=backend, perceptual=perceptual,
                            fid_weights=fid_weights)


def summary_table(evaluation: dict):
    """One row per method: PSNR, SSIM (7x7), SSIM (Gaussian), LPIPS / FID when measured, CDC, warp
    error (Lai et al.'s scale), colourfulness, fps (4 decimals)."""
    from .evaluate import summary_table as table

    return table(evaluation).round(4)


def interval_table(evaluation: dict, metrics=("psnr", "ssim")):
    """Per method: mean PSNR and SSIM over clips with 95% bootstrap intervals, and fusion - method
    with paired bootstrap intervals over the same clips (evaluate.interval_table)."""
    from .evaluate import interval_table as table

    return table(evaluation, metrics)


def measurement_notes(evaluation: dict):
    """What the figures were measured with: the warp error's flow and the metrics skipped (one line each)."""
    import pandas as pd

    flow = evaluation["metric_flow"]
    rows = [{"item": "warp error flow", "note": ", ".join(f"{k}={v}" for k, v in flow.items())
             + " (the temporal branch's flow is not used to measure it)"}]
    rows += [{"item": name, "note": why} for name, why in evaluation["skipped"].items()]
    return pd.DataFrame(rows).set_index("item")


def result_checks(evaluation: dict):
    """The issue's result criteria as a small table: fusion PSNR above every other method, fusion
    CDC no worse than the exemplar branch's."""
    import pandas as pd

    s = evaluation["summary"]
    rows = [{"check": f"PSNR fusion > {m}", "fusion": s["fusion"]["psnr"], "other": s[m]["psnr"],
             "holds": s["fusion"]["psnr"] > s[m]["psnr"]} for m in s if m != "fusion"]
    if "exemplar" in s:
        rows.append({"check": "CDC fusion <= exemplar", "fusion": s["fusion"]["cdc"], "other": s["exemplar"]["cdc"],
                     "holds": s["fusion"]["cdc"] <= s["exemplar"]["cdc"]})
    return pd.DataFrame(rows).set_index("check")


def clip_psnr(evaluation: dict) -> dict[str, np.ndarray]:
    """Mean PSNR of each test clip per method (the unit the intervals resample: frames of one clip
    are not independent)."""
    from .evaluate import clip_values

    return clip_values(evaluation, "psnr")


def claims(evaluation: dict) -> list[Claim]:
    """Fusion against each other method on the same test clips: PSNR difference (dB) with its
    paired bootstrap interval over clips; holds when the interval lies above 0."""
    psnr = clip_psnr(evaluation)
    if "fusion" not in psnr or len(psnr["fusion"]) < 2:  # an interval needs two clips (stage_metrics says so)
        return []
    seeds = len(evaluation.get("seeds", [None]))
    return [Claim.difference(f"fusion_beats_{m}_psnr", f"fusion beats {m} (PSNR dB, per clip)",
                             paired_difference(psnr["fusion"], psnr[m], name=f"PSNR fusion - {m}"), seeds=seeds)
            for m in psnr if m != "fusion"]


def strip_outputs(evaluation: dict, clip: int = 0) -> tuple[str, dict]:
    """(clip id, per-method frames) of the `clip`-th kept test clip, for frame strips."""
    outputs = evaluation["outputs"]
    if not outputs:
        raise PolySpaceError("evaluation kept no outputs; evaluate with keep_outputs >= 1")
    ids = list(outputs)
    if not 0 <= clip < len(ids):
        raise PolySpaceError(f"strip clip {clip}: the evaluation kept {len(ids)} clips (0..{len(ids) - 1})")
    return ids[clip], outputs[ids[clip]]


def stage_metrics(ws, evaluation: dict, run: ColorRun | None = None, test: TestSet | None = None) -> dict[str, Any]:
    """metrics.json of 08: evaluate.method_metrics (psnr_/ssim_/ssim_gaussian_/lpips_/fid_/cdc_/
    warp_error_<method>, fps_fusion, the two criteria), the test set (name, clips), per-method 95%
    intervals of PSNR and SSIM over clips and paired intervals of fusion - method, the warp
    error's flow, the metrics skipped and why, and the training record (best validation L1 and
    epoch per phase, training seconds, the checkpoint)."""
    from .evaluate import method_metrics

    metrics = method_metrics(evaluation)
    # the report index shows the first numbers: the two criteria's metrics, fusion first
    methods = [m for m in ("fusion", "exemplar", "temporal", "global") if m in evaluation["summary"]]
    first = [f"{k}_{m}" for k in ("psnr", "cdc") for m in methods] + ["fps_fusion", "ssim_fusion",
                                                                       "warp_error_fusion", "warp_error_exemplar"]
    out = {k: metrics[k] for k in first if k in metrics}
    out.update({k: v for k, v in metrics.items() if k not in out})
    out["test_clips"] = len(next(iter(evaluation["results"].values())).cdc)
    if test is not None:
        out["test_set"] = test.dataset
        out["test_protocol"] = test.protocol
    if len(evaluation.get("seeds", [])) > 1:
        out["seeds"] = list(evaluation["seeds"])
        out["seed_std"] = {m: {k: std[k] for k in ("psnr", "ssim", "cdc", "warp_error")}
                           for m, std in evaluation["summary_std"].items()}
    out["metric_flow"] = evaluation["metric_flow"]
    out["skipped"] = evaluation["skipped"]
    if out["test_clips"] >= 2:
        from .evaluate import clip_values

        for metric in ("psnr", "ssim"):
            values = clip_values(evaluation, metric)
            out[f"{metric}_intervals"] = {m: [(ci := bootstrap_interval(v, name=f"{metric} {m}")).low, ci.high]
                                          for m, v in values.items()}
            if "fusion" in values:
                out[f"{metric}_fusion_minus"] = {
                    m: paired_difference(values["fusion"], v, name=f"{metric} fusion - {m}").as_dict()
                    for m, v in values.items() if m != "fusion"}
    else:
        out["claims_skipped"] = f"{out['test_clips']} test clip: intervals and claims need at least 2"
    out["claims"] = [c.as_dict() for c in claims(evaluation)]
    if run is not None:
        for phase in ("exemplar", "fusion"):
            best = run.best(phase)
            if best is not None:
                out[f"val_l1_{phase}"] = best["val_l1"]
                out[f"best_epoch_{phase}"] = best["epoch"]
        out["train_seconds"] = sum(h["seconds"] for h in run.history)
        out["checkpoint"] = str(run.checkpoint)
    return out
