"""Training the fusion colorization system, in two phases, with HF Accelerate.

Phase A (exemplar): the exemplar branch alone on single frames + their clip's reference,
    L1 on its ab + `warp_weight` x L1 on the correspondence's warped ab (direct signal for the
    matching). Skipped for a branch loaded from a checkpoint (Strategy 1).
Phase B (fusion): the whole system on sequences from frame 0, FusionLoss (L1 + temporal
    consistency [+ perceptual/contextual]); optimizer groups from get_parameter_groups(): the
    exemplar part at lr_exemplar_finetune, the fusion UNet at lr_fusion.

Both phases keep the epoch with the lowest validation L1 (selection on validation, never on
test) and save it. Accelerate gives AMP (`mixed_precision` fp16/bf16), gradient accumulation
(`grad_accum`) and multi-process data parallelism: the same code runs single-process on CPU or
under `accelerate launch -m polyspace_core.colorize.train ...` / `torchrun -m ...`.
A finished phase is saved under out_dir and skipped when the run is started again.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..distributed import make_accelerator
from ..errors import PolySpaceError
from ..scalar_log import LOG_FOLDER, ScalarLog
from .data import ColorClip, FrameDataset, SequenceDataset
from .exemplar import ExemplarBranch
from .flow import CachedFlow
from .lab import split_lab
from .loss import FusionLoss, build_feature_net
from .system import FusionSystem
from .train_config import TrainConfig, add_seed_train_arguments, add_train_arguments  # noqa: F401  (re-exported)


def _loader(dataset, batch_size: int, seed: int, num_samples: int | None = None) -> DataLoader:
    """Shuffled batches; with num_samples, each epoch draws that many distinct items at random."""
    from torch.utils.data import RandomSampler

    gen = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, num_samples=min(num_samples or len(dataset), len(dataset)), generator=gen)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)


# ----------------------------------------------------------------------------- phase A

@torch.no_grad()
def exemplar_val_l1(branch: ExemplarBranch, clips: list[ColorClip], device: torch.device) -> float:
    """Mean |ab - ab_gt| (normalised) of the exemplar branch over every frame of `clips`."""
    branch.eval()
    total, count = 0.0, 0
    for clip in clips:
        l, ab = split_lab(clip.lab.to(device))
        ref_l, ref_ab = split_lab(clip.ref_lab[None].to(device))
        ref = branch.encode_reference(ref_l.expand(len(l), -1, -1, -1), ref_ab.expand(len(l), -1, -1, -1))
        pred = branch(l, reference=ref)["ab"]
        total += float((pred - ab).abs().mean()) * len(l)
        count += len(l)
    return total / max(count, 1)


def train_exemplar(branch: ExemplarBranch, train_clips: list[ColorClip], val_clips: list[ColorClip],
                   cfg: TrainConfig, device: torch.device | str = "cpu", progress: bool = True,
                   log_dir: str | os.PathLike | None = None) -> list[dict]:
    """Phase A in place on `branch` (best validation epoch kept). Returns per-epoch history;
    log_dir: its TensorBoard curves (a restarted phase replaces them)."""
    from tqdm.auto import tqdm

    cfg.check()
    acc = make_accelerator(torch.device(device), cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    branch.apply_strategy()
    opt = torch.optim.Adam(branch.trainable_parameters(), lr=cfg.lr_exemplar)
    loader = _loader(FrameDataset(train_clips), cfg.batch_size, cfg.seed,
                     num_samples=cfg.frames_per_clip * len(train_clips))
    model, opt, loader = acc.prepare(branch, opt, loader)
    history, best, best_state = [], float("inf"), None
    log = ScalarLog(log_dir if acc.is_main_process else None, first_step=1)
    for epoch in range(cfg.exemplar_epochs):
        model.train()
        start, losses = time.perf_counter(), []
        for step, batch in enumerate(tqdm(loader, desc=f"exemplar {epoch + 1}/{cfg.exemplar_epochs}",
                                          disable=not progress or not acc.is_local_main_process, leave=False)):
            if cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch:
                break
            l, ab = split_lab(batch["lab"])
            ref_l, ref_ab = split_lab(batch["ref_lab"])
            with acc.accumulate(model):
                out = model(l, ref_l, ref_ab)
                loss = ((out["ab"].float() - ab).abs().mean()
                        + cfg.warp_weight * (out["warped_ab"].float() - ab).abs().mean())
                acc.backward(loss)
                opt.step()
                opt.zero_grad()
            losses.append(float(loss.detach()))
        val = exemplar_val_l1(acc.unwrap_model(model), val_clips, acc.device)
        history.append({"phase": "exemplar", "epoch": epoch + 1, "train_loss": sum(losses) / max(len(losses), 1),
                        "val_l1": val, "seconds": time.perf_counter() - start})
        log.add(epoch + 1, {**history[-1], "lr": opt.param_groups[0]["lr"]})
        if val < best:
            best, best_state = val, copy.deepcopy(acc.unwrap_model(model).state_dict())
    log.close()
    acc.unwrap_model(model, keep_fp32_wrapper=False)  # drop the autocast wrapper prepare() put on forward
    if best_state is not None:
        branch.load_state_dict(best_state)
    branch.eval()
    return history


# ----------------------------------------------------------------------------- phase B

@torch.no_grad()
def fusion_val_l1(system: FusionSystem, clips: list[ColorClip], device: torch.device) -> float:
    """Mean |ab - ab_gt| of the full system over whole clips (memory reset per clip)."""
    system.eval()
    total, count = 0.0, 0
    for clip in clips:
        system.reset_memory()
        lab = clip.lab[None].to(device)
        pred = system(lab, clip.grey[None], clip.ref_lab[None])
        total += float((pred - split_lab(lab)[1]).abs().mean()) * len(clip.frames)
        count += len(clip.frames)
    return total / max(count, 1)


def train_fusion_unet(system: FusionSystem, train_clips: list[ColorClip], val_clips: list[ColorClip],
                 cfg: TrainConfig, device: torch.device | str = "cpu", progress: bool = True,
                 log_dir: str | os.PathLike | None = None) -> list[dict]:
    """Phase B in place on `system` (best validation epoch kept). Returns per-epoch history;
    log_dir: its TensorBoard curves (the loss terms too; a restarted phase replaces them)."""
    from tqdm.auto import tqdm

    cfg.check()
    acc = make_accelerator(torch.device(device), cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    system.exemplar.apply_strategy()
    groups = system.get_parameter_groups(lr_exemplar=cfg.lr_exemplar_finetune, lr_fusion=cfg.lr_fusion)
    opt = torch.optim.Adam(groups)
    feature_net = None
    if cfg.perceptual_weight or cfg.contextual_weight:
        feature_net = build_feature_net(cfg.feature_net, cfg.feature_weights).to(acc.device)
    criterion = FusionLoss(temporal_weight=cfg.temporal_weight, perceptual_weight=cfg.perceptual_weight,
                           contextual_weight=cfg.contextual_weight, feature_net=feature_net)
    loader = _loader(SequenceDataset(train_clips, cfg.seq_len), cfg.fusion_batch_size, cfg.seed + 1)
    # every epoch revisits the same grey frame pairs and their flow never changes: memoise it
    # (bounded to ~512 MB of flows) for this phase, and hand the system back its own backend
    backend = system.propagator.backend
    side = train_clips[0].lab.shape[-2:]
    system.propagator.backend = CachedFlow(backend, max_items=max(1000, (512 << 20) // (8 * side[0] * side[1])))
    model, opt, loader = acc.prepare(system, opt, loader)
    inner = acc.unwrap_model(model)
    history, best, best_state = [], float("inf"), None
    log = ScalarLog(log_dir if acc.is_main_process else None, first_step=1)
    for epoch in range(cfg.fusion_epochs):
        model.train()
        start, losses = time.perf_counter(), []
        for step, batch in enumerate(tqdm(loader, desc=f"fusion {epoch + 1}/{cfg.fusion_epochs}",
                                          disable=not progress or not acc.is_local_main_process, leave=False)):
            if cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch:
                break
            inner.reset_memory()  # every batch is a new set of sequences
            with acc.accumulate(model):
                outputs, memflow_ab, memflow_conf = model(batch["lab"], batch["grey"], batch["ref_lab"],
                                                          return_memflow=True)
                loss = criterion(outputs, batch["lab"], memflow_ab, memflow_conf, batch["ref_lab"])
                acc.backward(loss)
                opt.step()
                opt.zero_grad()
            losses.append(float(loss.detach()))
        val = fusion_val_l1(inner, val_clips, acc.device)
        history.append({"phase": "fusion", "epoch": epoch + 1, "train_loss": sum(losses) / max(len(losses), 1),
                        "val_l1": val, "seconds": time.perf_counter() - start, **{
                            f"last_{k}": v for k, v in criterion.last_terms.items()}})
        log.add(epoch + 1, {f"train_{k}" if k.startswith("last_") else k: v for k, v in history[-1].items()})
        if val < best:
            best, best_state = val, copy.deepcopy(inner.state_dict())
    log.close()
    acc.unwrap_model(model, keep_fp32_wrapper=False)  # drop the autocast wrapper prepare() put on forward
    system.propagator.backend = backend
    if best_state is not None:
        system.load_state_dict(best_state)
    system.eval()
    return history


# ----------------------------------------------------------------------------- the whole run

RUN_SETTINGS = "settings.json"  # what a run folder's result was trained with
RUN_FILES = ("checkpoint", "exemplar_phase", "history.json", LOG_FOLDER)
RNG_STATE = "rng_state.json"  # in exemplar_phase/: the generators' state where phase A ended


def claim_run_folder(out_dir: str | os.PathLike, settings: Mapping[str, Any], replace: bool) -> bool:
    """Make `out_dir` the folder of a run with `settings` (JSON-able: data, training config, flow,
    checkpoints). A run there with the same settings is kept, so train_colorization resumes or
    reuses it (returns True when its final checkpoint exists). One with other or unrecorded
    settings is never reused for these nor overwritten silently: with `replace` it is announced
    and cleared (a notebook's own run folder), else it is a one-line error (--overwrite)."""
    import shutil

    from ..io import atomic_write_json, read_json

    out = Path(out_dir)
    previous = read_json(out / RUN_SETTINGS) if (out / RUN_SETTINGS).is_file() else None
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and previous != dict(settings):
        what = "other settings" if previous is not None else "unrecorded settings"
        if not replace:
            raise PolySpaceError(f"{out}: holds a colorization run made with {what} ({', '.join(present)}); pass "
                                 f"--overwrite to replace it, or choose another --out")
        print(f"{out}: the run there was made with {what}; clearing {', '.join(present)} and training again")
        for name in present:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RUN_SETTINGS, dict(settings))
    return (out / "checkpoint" / "system.json").is_file()


def train_colorization(train_clips: list[ColorClip], val_clips: list[ColorClip], out_dir: str | os.PathLike,
                       cfg: TrainConfig, device: torch.device | str = "cpu", flow=None,
                       swin_checkpoint: str | None = None, exemplar_checkpoint: str | None = None,
                       progress: bool = True, shared_phase_a: str | os.PathLike | None = None
                       ) -> tuple[FusionSystem, list[dict]]:
    """Phases A and B; saves out_dir/exemplar_phase/ and out_dir/checkpoint/ (a FusionSystem
    folder) plus history.json. A phase whose folder exists is loaded instead of retrained.

    exemplar_checkpoint: an ExemplarBranch folder -> Strategy 1 (phase A skipped, the colour net
    frozen, the correspondence fine-tuned). Else Strategy 2 from scratch, with a Swin embedding
    from `swin_checkpoint` or the frozen random embedding. shared_phase_a: the finished phase-A
    folder of another run with the same data and settings; phase B starts from it as from its own
    phase A but draws from `cfg.seed` (notebook 08's seeds share phase A and repeat phase B, the
    colorization fusion, under their own seeds)."""
    from ..io import atomic_write_json, read_json
    from ..seeding import rng_state, seed_everything, set_rng_state
    from .exemplar import build_exemplar_branch

    seed_everything(cfg.seed)
    out = Path(out_dir)
    history_path = out / "history.json"
    history = read_json(history_path)["epochs"] if history_path.is_file() else []
    final = out / "checkpoint"
    if (final / "system.json").is_file():
        return FusionSystem.from_pretrained(final, flow=flow).to(device).eval(), history

    phase_a = out / "exemplar_phase"
    if exemplar_checkpoint is not None:
        branch = ExemplarBranch.from_pretrained(exemplar_checkpoint)
    elif shared_phase_a is not None:
        if not (Path(shared_phase_a) / "config.json").is_file():
            raise PolySpaceError(f"{shared_phase_a}: not a finished phase A (no config.json); train that run first")
        branch = ExemplarBranch.from_pretrained(shared_phase_a)
        branch.pretrained = False  # a phase-A result of these settings: train it on as Strategy 2
        branch.apply_strategy()
        history = [h for h in history if h["phase"] != "exemplar"]
    elif (phase_a / "config.json").is_file():
        branch = ExemplarBranch.from_pretrained(phase_a)
        branch.pretrained = False  # our own phase-A result: keep training it as Strategy 2
        branch.apply_strategy()
        # a restart after phase A: phase B draws (the fusion net's init, its batches) from where
        # phase A left the generators, as in an uninterrupted run
        if (phase_a / RNG_STATE).is_file():
            set_rng_state(read_json(phase_a / RNG_STATE))
        else:
            print(f"note: {phase_a} holds no random-generator state (an older run); phase B starts from seed "
                  f"{cfg.seed} and will not repeat an uninterrupted run bit for bit")
    else:
        branch = build_exemplar_branch(swin_checkpoint=swin_checkpoint, embed_seed=cfg.seed)
        history = [h for h in history if h["phase"] != "exemplar"]
        history += train_exemplar(branch.to(device), train_clips, val_clips, cfg, device, progress,
                                  log_dir=out / LOG_FOLDER / "exemplar")
        atomic_write_json(phase_a / RNG_STATE, rng_state())  # before config.json, which marks the phase done
        branch.save_pretrained(phase_a)
        _save_history(history_path, history, cfg)

    system = FusionSystem(branch, flow=flow).to(device)
    system.trained_size = int(min(train_clips[0].frames.shape[1:3]))
    history = [h for h in history if h["phase"] != "fusion"]
    history += train_fusion_unet(system, train_clips, val_clips, cfg, device, progress,
                                 log_dir=out / LOG_FOLDER / "fusion")
    if _is_main_process():
        system.save_pretrained(final)
        _save_history(history_path, history, cfg)
    return system, history


def _save_history(path: Path, history: list[dict], cfg: TrainConfig) -> None:
    from ..io import atomic_write_json

    if _is_main_process():
        atomic_write_json(path, {"config": asdict(cfg), "epochs": history})


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------- CLI

def run_from_args(args: argparse.Namespace) -> int:
    from ..seeding import best_device
    from .data import load_color_clips
    from .flow import build_flow_backend

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    device = best_device(args.device)
    flow = build_flow_backend(args.flow, raft_weights=args.raft_weights, memflow_path=args.memflow_path,
                              memflow_ckpt=args.memflow_ckpt, device=device)
    train_clips = load_color_clips(args.data, "train")
    val_clips = load_color_clips(args.data, "validation")
    settings = {"data": {"root": str(Path(args.data).resolve()), "train": [c.id for c in train_clips],
                         "validation": [c.id for c in val_clips]},
                "train": asdict(cfg), "flow": flow.describe(), "swin_checkpoint": args.swin_checkpoint,
                "exemplar_checkpoint": args.exemplar_checkpoint}
    if _is_main_process():
        claim_run_folder(args.out, settings, replace=args.overwrite)
    _, history = train_colorization(train_clips, val_clips, args.out, cfg, device, flow=flow,
                                    swin_checkpoint=args.swin_checkpoint,
                                    exemplar_checkpoint=args.exemplar_checkpoint)
    if _is_main_process():
        for h in history:
            print(f"{h['phase']:>8} epoch {h['epoch']:>3}  train {h['train_loss']:.4f}  val L1 {h['val_l1']:.4f}")
        print(f"checkpoint: {Path(args.out) / 'checkpoint'}")
    return 0


def build_seed_system(args: argparse.Namespace, device: torch.device) -> FusionSystem:
    """The FusionSystem of `polyspace train-color`'s flags (the seed's constructor for --embed
    swintexco; our exemplar branch with the named embedding family otherwise). Flags that
    contradict each other are one line each."""
    from .exemplar import build_exemplar_branch
    from .fusion_unet import FusionUNet
    from .system import build_seed_exemplar

    if args.embed == "swintexco":
        if args.embed_backbone is not None:
            raise PolySpaceError("--embed_backbone names the backbone of --embed swin/swinv2/convnext; SwinTExCo's "
                                 "(--embed swintexco) is --swin_backbone")
        exemplar = build_seed_exemplar(args.swintexco_path, args.swintexco_ckpt, args.swin_backbone,
                                       image_size=args.image_size)
    else:
        if args.swintexco_ckpt is not None:
            raise PolySpaceError(f"--swintexco_ckpt loads SwinTExCo's networks; it cannot go with --embed {args.embed} "
                                 f"(our exemplar branch); drop one")
        if args.embed == "random" and args.embed_backbone is not None:
            raise PolySpaceError("--embed random has no backbone; drop --embed_backbone or name its family")
        if args.embed != "random" and args.embed_backbone is None:
            raise PolySpaceError(f"--embed {args.embed}: needs --embed_backbone (a local folder or a cached hub id)")
        if args.swintexco_path is not None and not Path(args.swintexco_path).is_dir():
            raise PolySpaceError(f"--swintexco_path {args.swintexco_path}: not a folder")
        exemplar = build_exemplar_branch(args.embed_backbone, embed=args.embed, embed_seed=args.seed)
    system = FusionSystem(exemplar, FusionUNet(), memflow_path=args.memflow_path, memflow_ckpt=args.memflow_ckpt,
                          memflow_stage=args.memflow_stage, device=device)
    system.swintexco_path = args.swintexco_path
    return system.to(device)


def split_sequences(per_video: list[list[ColorClip]], val_fraction: float) -> tuple[list[ColorClip], list[ColorClip]]:
    """(train, validation) clips with whole videos held out for validation: round(n x
    val_fraction) of the n videos (at least one), evenly spaced in name order."""
    n = len(per_video)
    if not 0 < val_fraction < 1:
        raise PolySpaceError(f"--val_fraction {val_fraction}: must be between 0 and 1")
    if n < 2:
        raise PolySpaceError(f"--dataset: {n} video(s); training holds whole videos out for validation, so it "
                             f"needs at least 2")
    held = max(1, round(n * val_fraction))
    val_ids = {round(i * n / held) for i in range(held)}
    train = [c for i, clips in enumerate(per_video) if i not in val_ids for c in clips]
    val = [c for i, clips in enumerate(per_video) if i in val_ids for c in clips]
    return train, val


def run_seed_training(args: argparse.Namespace) -> int:
    """`polyspace train-color`: the seed's train/train.py. Builds the system, trains it end to end
    (the seed's loop: FusionLoss, Adam over get_parameter_groups() with the seed's learning rates
    unless given; no separate exemplar phase), keeps the best validation epoch and saves it as a
    FusionSystem folder in --save_dir/checkpoint."""
    from ..io import atomic_write_json
    from ..seeding import best_device, seed_everything
    from .data import imagenet_training_clips, video_training_clips

    for name in ("batch_size", "epochs", "size", "frames", "clips_per_video"):
        if getattr(args, name) < (0 if name == "epochs" else 1):
            raise PolySpaceError(f"--{name} {getattr(args, name)}: must be at least {0 if name == 'epochs' else 1}")
    if args.imagenet_clips is not None and args.imagenet is None:
        raise PolySpaceError("--imagenet_clips needs --imagenet (the ImageFolder tree to draw them from)")
    seed_everything(args.seed)
    device = best_device(args.device)
    train, val = split_sequences(video_training_clips(args.dataset, args.size, args.frames, args.clips_per_video),
                                 args.val_fraction)
    imagenet = None
    if args.imagenet is not None:
        extra, imagenet = imagenet_training_clips(args.imagenet, args.imagenet_clips or len(train), args.size,
                                                  args.frames, seed=args.seed)
        train = train + extra
    system = build_seed_system(args, device)
    lrs = system.get_parameter_groups(args.lr_swintexco, args.lr_fusion)
    cfg = TrainConfig(fusion_epochs=args.epochs, fusion_batch_size=args.batch_size, seq_len=args.frames,
                      lr_exemplar_finetune=lrs[0]["lr"], lr_fusion=lrs[1]["lr"],
                      temporal_weight=args.temporal_weight, mixed_precision=args.mixed_precision,
                      grad_accum=args.grad_accum, max_steps_per_epoch=args.max_steps_per_epoch, seed=args.seed)
    settings = {"command": "train-color", "dataset": str(Path(args.dataset).resolve()),
                "train": [c.id for c in train], "validation": [c.id for c in val], "imagenet": imagenet,
                "config": asdict(cfg), "size": args.size, "flow": system.propagator.backend.describe(),
                "weights": system.describe_weights(), "embed": args.embed, "swintexco_ckpt": args.swintexco_ckpt,
                "swin_backbone": args.swin_backbone if args.embed == "swintexco" else None,
                "embed_backbone": args.embed_backbone, "image_size": args.image_size}
    out = Path(args.save_dir)
    if _is_main_process() and claim_run_folder(out, settings, replace=args.overwrite):
        print(f"{out / 'checkpoint'}: already trained with these settings (pass --overwrite to train again)")
        return 0
    from_imagenet = imagenet["clips"] if imagenet else 0
    print(f"train-color: {len(train)} training clips ({len(train) - from_imagenet} from video, {from_imagenet} from "
          f"ImageNet), {len(val)} validation clips; exemplar lr {cfg.lr_exemplar_finetune:g}, "
          f"fusion lr {cfg.lr_fusion:g}")
    if imagenet and imagenet["own_exemplar"]:
        print(f"note: {imagenet['own_exemplar']} ImageNet clip(s) of one-photo classes are their own exemplar")
    weights = system.describe_weights()
    print("weights: " + "; ".join(f"{k} {v}" for k, v in weights.items() if k != "summary"))
    system.trained_size = args.size
    history = train_fusion_unet(system, train, val, cfg, device, log_dir=out / LOG_FOLDER / "fusion")
    if _is_main_process():
        system.save_pretrained(out / "checkpoint")
        atomic_write_json(out / "history.json", {"config": asdict(cfg), "epochs": history})
        for h in history:
            print(f"epoch {h['epoch']:>3}  train {h['train_loss']:.4f}  val L1 {h['val_l1']:.4f}")
        print(f"checkpoint: {out / 'checkpoint'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polyspace_core.colorize.train",
                                     description="Train the fusion colorization system (accelerate launch ready).")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except PolySpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
