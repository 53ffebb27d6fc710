"""The tiny zoo: the tiny backbones trained on SynthMotion's pretraining set, for the built-in demo.

Random-init backbones give near-chance features on SynthMotion, so a demo built on them would
show converters and fusion moving noise around. The zoo gives each tiny backbone learned and
distinct knowledge before any downstream stage sees it:

- teachers (videomae-tiny, timesformer-tiny, vivit-tiny): supervised on the FINE classes, each
  with its own architecture (tubelets + joint attention, divided space-time attention, ViViT
  tubelets + CLS), so they carry different views of the same task;
- student (vjepa2-tiny): supervised only on the COARSE classes (`class_coarse_group`: motion
  families, e.g. move_left and move_right are both "direction"), so it knows less than the
  teachers about what separates fine classes (direction, order, counts).

The pretraining set is its own SynthMotion set of the demo's classes, generated with a different
seed from the downstream demo set (`PRETRAIN_SEED`), so no downstream video was seen in
pretraining: the teachers know the task the way a model pretrained on a related labelled set
does, and the student knows only its families. Each
member is saved with save_pretrained (model + processor) under `<zoo>/<name>/` and loads through
the same `load_backbone(path)` as any checkpoint. `zoo_card.json` (written last) records what
it was trained on, the epochs, and a linear probe's fine-class accuracy on the pretraining
set's held-out test split. A built member with the same recipe is reused, not retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones import TINY_PRESETS, VideoBackbone, load_backbone
from ..errors import PolySpaceError
from ..io import atomic_write_json, write_checksums
from ..scalar_log import LOG_FOLDER, ScalarLog
from ..seeding import torch_threads

ZOO_VERSION = 2
PRETRAIN_SEED = 1001  # the downstream demo set uses other seeds; clips are keyed by seed
# The demo's 10 classes, 250 clips each (1750 train, 500 held out). Tiny ViTs trained from scratch
# generalise with the number of distinct clips, not epochs over few of them: with 40 clips per
# class (version 1, 14 classes) the teachers' held-out probe stayed at 0.27-0.35 after 12 epochs
# while they fit their training clips; more clips and fewer epochs cost about the same.
PRETRAIN_DATA = dict(layout="hmdb51-csv", classes=10, clips_per_class=250, frames=16, size=64)
CARD = "zoo_card.json"

# name -> (role, objective). "fine": the SynthMotion classes; "coarse": their motion families.
MEMBERS: dict[str, tuple[str, str]] = {
    "vjepa2-tiny": ("student", "coarse"),
    "videomae-tiny": ("teacher", "fine"),
    "timesformer-tiny": ("teacher", "fine"),
    "vivit-tiny": ("teacher", "fine"),
}
TRAIN = dict(epochs=4, batch=16, lr=2e-3, weight_decay=0.05, warmup=0.1, seed=0)
# Members train and are probed with one CPU thread: CPU results depend on the thread count, and
# with it fixed a member is the same whatever cores the machine (or `make report`'s share) has;
# tiny models gain little from more (1.3x from a second core).
CPU_THREADS = 1
# Members trained at once on the CPU (build_zoo's default): one process each, one thread each, as
# many as the threads this process may use (torch.get_num_threads: a `make report` kernel that shares
# the cores with another notebook gets one, so its members train one after another). On 2 idle
# cores two at once use the second core fully where one process gains 1.3x from it; the members
# come out the same either way.
# Relative cost of one epoch per member on 1 core (measured: seconds per epoch), for the order.
MEMBER_COST = {"vjepa2-tiny": 12.0, "videomae-tiny": 14.0, "timesformer-tiny": 12.3, "vivit-tiny": 7.1}
# Epochs and learning rate per member, from their cost and how fast each architecture learns
# (measured on 1 core, 1750 training clips; probe on the pretraining set's held-out split, never
# the demo's clips). VideoMAE: 4 epochs at 2e-3, probe 0.73. TimeSformer learns slowest (divided
# attention composes space and time over its 3 layers) and is the most sensitive to the schedule:
# at 2e-3 4 epochs 0.52, 10 epochs 0.47; at 1e-3 6 epochs 0.62, 8 epochs 0.54; at 5e-4 8 epochs
# 0.70 (0.51 with warm-up 0.2), 10 epochs 0.61; at 7e-4 10 epochs 0.72. ViViT's CLS head climbs
# slowly: 2e-3 10 epochs 0.67, 3e-3 0.61, 1e-3 10 epochs 0.72 (5e-4 8 epochs 0.67). The student
# (V-JEPA 2, 6x the cost per clip: its rotary attention) learns only the coarse families and stays
# below the teachers by design: 4 epochs, probe 0.37 (2 epochs: 0.15, too little for the
# converters to carry anything over).
MEMBER_TRAIN: dict[str, dict[str, Any]] = {
    "vjepa2-tiny": dict(epochs=4),
    "videomae-tiny": dict(epochs=4),
    "timesformer-tiny": dict(epochs=10, lr=7e-4),
    "vivit-tiny": dict(epochs=10, lr=1e-3),
}


def pretrain_spec(data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pretraining set's generator parameters with the classes resolved to names and the
    generator version, so a changed SynthMotion generator never passes for a cached one."""
    from ..datasets.synthmotion import select_classes
    from ..datasets.synthmotion_layouts import GENERATOR_VERSION

    data = {**PRETRAIN_DATA, **(data or {})}
    return {**data, "classes": select_classes(data["classes"]), "seed": PRETRAIN_SEED,
            "generator_version": GENERATOR_VERSION}


def recipe(name: str, epochs: int | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that determines a zoo member; a cached member is reused only if this matches.
    epochs: in place of the member's own (MEMBER_TRAIN)."""
    role, objective = MEMBERS[name]
    train = {**TRAIN, **MEMBER_TRAIN[name], **({} if epochs is None else {"epochs": int(epochs)})}
    return {"zoo_version": ZOO_VERSION, "preset": name, "role": role, "objective": objective,
            "pretrain_data": pretrain_spec(data), "train": train, "cpu_threads": CPU_THREADS}


def _card_matches(directory: Path, rec: dict[str, Any]) -> dict[str, Any] | None:
    card_path = directory / CARD
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError:
        return None
    return card if card.get("recipe") == rec else None


# --------------------------------------------------------------------------------------------
# data


def load_pixels(split: Any, backbones: Sequence[VideoBackbone], progress: bool = True) -> dict[str, torch.Tensor]:
    """Decode every video of a split once and run each backbone's processor on its own clip:
    name -> pixels (N, T, 3, h, w), kept as float16 to halve the memory (cast back per batch)."""
    from tqdm.auto import tqdm

    from ..video.multi import ClipRequest, decode_clips

    requests = [ClipRequest(b.name, b.frames, sampling="uniform") for b in backbones]
    pixels: dict[str, list[torch.Tensor]] = {b.name: [] for b in backbones}
    for item in tqdm(split.items, desc=f"decode {split.split}", unit="video", disable=not progress):
        decoded = decode_clips(item.path, requests)
        for b in backbones:
            pixels[b.name].append(b.preprocess([decoded.clips[b.name]])[0].half())
    return {name: torch.stack(v) for name, v in pixels.items()}


def coarse_labels(class_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(coarse group names, fine label -> coarse label) for SynthMotion class names."""
    from ..datasets import class_coarse_group

    groups = list(dict.fromkeys(class_coarse_group(c) for c in class_names))
    return groups, np.array([groups.index(class_coarse_group(c)) for c in class_names], dtype=np.int64)


# --------------------------------------------------------------------------------------------
# training and probing


def train_classifier(backbone: VideoBackbone, pixels: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                     epochs: int, batch: int, lr: float, weight_decay: float, warmup: float, seed: int,
                     device: torch.device, desc: str = "train",
                     log_dir: str | os.PathLike | None = None) -> list[dict[str, float]]:
    """Supervised training of a backbone + linear head on its clip feature (the model's own clip
    rule: mean pool or CLS). AdamW with one-cycle schedule. Returns per-epoch loss/accuracy;
    log_dir: its TensorBoard curves (a retrained member replaces them)."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    backbone.to(device).train()
    # BatchNorm (no affine) before the linear head, as in MAE's linear probing: the clip features
    # of LayerNorm-ed encoders differ between clips by small offsets around a large shared mean,
    # which a bare linear head picks up only slowly
    head = nn.Sequential(nn.BatchNorm1d(backbone.dim, affine=False), nn.Linear(backbone.dim, num_classes)).to(device)
    params = [*backbone.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = len(labels)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup)
    history = []
    log = ScalarLog(log_dir, first_step=1)
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch"):
        order = torch.randperm(n)
        total, correct = 0.0, 0
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            x, y = pixels[idx].to(device, torch.float32), labels[idx].to(device)
            logits = head(backbone(x, tokens="clip")[:, 0])
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        history.append({"epoch": epoch + 1, "loss": total / n, "train_accuracy": correct / n})
        log.add(epoch + 1, {"train_loss": total / n, "train_accuracy": correct / n, "lr": sched.get_last_lr()[0]})
    log.close()
    backbone.eval()
    head.eval()
    return history


def clip_features(backbone: VideoBackbone, pixels: torch.Tensor, batch: int = 32, tokens: str = "clip") -> torch.Tensor:
    """(N, T*D) features under a token rule, flattened ("clip": (N, D), the model's clip rule),
    float32 on CPU."""
    return probe_features(backbone, pixels, (tokens,), batch)[tokens]


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                          num_classes: int, *, epochs: int = 300, lr: float = 0.05, weight_decay: float = 1e-3,
                          seed: int = 0) -> float:
    """Accuracy of a multinomial logistic regression (standardised features, full-batch Adam)
    fitted on train and scored on test."""
    gen = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    w = (torch.randn(xtr.shape[1], num_classes, generator=gen) * 0.01).requires_grad_()
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(xtr @ w + b, train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == test_y).float().mean())


# --------------------------------------------------------------------------------------------
# the zoo


def zoo_path(zoo_dir: str | os.PathLike, name: str) -> Path:
    return Path(zoo_dir) / name


def probe_features(backbone: VideoBackbone, pixels: torch.Tensor, rules: Sequence[str] = ("clip", "temporal"),
                   batch: int = 32) -> dict[str, torch.Tensor]:
    """(N, T*D) features under each of several token rules, flattened, float32 on CPU, from one
    forward pass per batch (a probe needs clip and temporal features of the same clips)."""
    from ..backbones.models import token_rule

    device = next(backbone.model.parameters()).device
    out: dict[str, list[torch.Tensor]] = {rule: [] for rule in rules}
    with torch.no_grad():
        for i in range(0, len(pixels), batch):
            hidden = backbone.hidden_states(pixels[i:i + batch].float().to(device)).float()
            for rule in rules:
                out[rule].append(token_rule(backbone, hidden, rule).flatten(1).cpu())
    return {rule: torch.cat(parts) for rule, parts in out.items()}


def train_member(name: str, rec: dict[str, Any], train_px: torch.Tensor, test_px: torch.Tensor, *,
                 train_names: Sequence[str], groups: Sequence[str], to_coarse: np.ndarray, fine_tr: torch.Tensor,
                 fine_te: torch.Tensor, zoo_dir: Path, device: torch.device,
                 pretrain_data: dict[str, Any]) -> dict[str, Any]:
    """Train one member from its random init, probe it before and after, and save it (model,
    processor, checksums, then its card, written last) under `<zoo_dir>/<name>/`; returns the card."""
    role, objective = MEMBERS[name]
    n_fine = len(train_names)
    targets = fine_tr if objective == "fine" else torch.from_numpy(to_coarse)[fine_tr]
    num_classes = n_fine if objective == "fine" else len(groups)
    with torch_threads(CPU_THREADS if device.type == "cpu" else None):
        backbone = load_backbone(name).to(device)  # tiny presets: random init, fixed seed

        def probe() -> dict[str, float]:
            train_x, test_x = probe_features(backbone, train_px), probe_features(backbone, test_px)
            return {rule: linear_probe_accuracy(train_x[rule], fine_tr, test_x[rule], fine_te, n_fine)
                    for rule in train_x}

        probe_before = probe()  # the random-init network first: the card shows what training added
        t0 = time.time()
        history = train_classifier(backbone, train_px, targets, num_classes, **rec["train"], device=device,
                                   desc=f"zoo {name}", log_dir=zoo_dir / LOG_FOLDER / name)
        train_s = time.time() - t0
        probe_after = probe()
    target = zoo_path(zoo_dir, name)
    tmp = target.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    backbone.to("cpu").save_pretrained(tmp)
    write_checksums(tmp)  # checked whenever the member is loaded (backbones.load_backbone)
    card = {
        "name": name, "recipe": rec, "role": role,
        "objective": (f"supervised on the {num_classes} fine SynthMotion classes" if objective == "fine" else
                      f"supervised on the {num_classes} coarse motion families ({', '.join(groups)}) only"),
        "architecture": backbone.arch.model_class, "config": TINY_PRESETS[name][1],
        "frames": backbone.frames, "dim": backbone.dim,
        "params": sum(p.numel() for p in backbone.parameters()),
        "pretrain_data": pretrain_data,
        "epochs": rec["train"]["epochs"], "history": history, "train_seconds": round(train_s, 1),
        "probe": {"what": "linear probe on the clip feature (the model's clip rule), fine classes, fit on "
                          "the pretraining train split, scored on its held-out test split; temporal_*: the "
                          "same on the flattened temporal tokens that featurize stores by default",
                  "accuracy": probe_after["clip"], "random_init_accuracy": probe_before["clip"],
                  "temporal_accuracy": probe_after["temporal"],
                  "temporal_random_init_accuracy": probe_before["temporal"],
                  "chance": 1.0 / n_fine},
    }
    atomic_write_json(tmp / CARD, card)  # the card goes in last: a folder without it is unfinished
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return {**card, "path": str(target), "cached": False}


def _die_with_parent() -> None:
    # a worker must not outlive a killed build (it would finish a member while a rerun trains the
    # same one); Linux delivers SIGKILL to it when its parent dies
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _train_members_at_once(tasks: list[dict[str, Any]], jobs: int):
    """train_member for each task, `jobs` processes at once (one CPU thread each: the members are
    the same as one after another); yields the cards as members finish."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=ctx, initializer=_die_with_parent) as pool:
        # the costliest first, so the last to finish is a short one
        order = sorted(tasks, key=lambda t: -t["rec"]["train"]["epochs"] * MEMBER_COST[t["name"]])
        futures = [pool.submit(train_member, **task) for task in order]
        for future in as_completed(futures):
            yield future.result()


def build_zoo(zoo_dir: str | os.PathLike = "data/zoo", data_dir: str | os.PathLike = "data/synthmotion_pretrain", *,
              members: Sequence[str] | None = None, epochs: int | None = None, device: str = "auto",
              force: bool = False, workers: int = 2, progress: bool = True,
              pretrain: dict[str, Any] | None = None, jobs: int | None = None) -> dict[str, dict[str, Any]]:
    """Train (or reuse) the zoo members; returns name -> zoo card (with "path").

    zoo_dir: where members are saved (`<zoo_dir>/<name>/`). data_dir: where the SynthMotion
    pretraining set is generated (cached by the generator). epochs: training epochs of every
    member (default per member, MEMBER_TRAIN). force: retrain even when a member with the same
    recipe exists.
    pretrain: overrides of PRETRAIN_DATA (classes, clips_per_class, ...) for a smaller set.
    jobs: members trained at once on the CPU, each in its own process (default: torch's thread
    count, the cores this process may use).
    """
    from ..datasets import generate_synthmotion, load_split
    from ..seeding import best_device

    members = list(members or MEMBERS)
    unknown = [m for m in members if m not in MEMBERS]
    if unknown:
        raise PolySpaceError(f"zoo member {unknown[0]!r}: unknown; members are {', '.join(MEMBERS)}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise PolySpaceError(f"epochs {epochs}: must be at least 1")
    jobs = torch.get_num_threads() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise PolySpaceError(f"jobs {jobs!r}: members trained at once must be at least 1")
    data = {**PRETRAIN_DATA, **(pretrain or {})}
    zoo_dir = Path(zoo_dir)
    cards: dict[str, dict[str, Any]] = {}
    todo = []
    for name in members:
        card = None if force else _card_matches(zoo_path(zoo_dir, name), recipe(name, epochs, data))
        if card is not None:
            cards[name] = {**card, "path": str(zoo_path(zoo_dir, name)), "cached": True}
        else:
            todo.append(name)
    if not todo:
        return cards

    dev = best_device(device)
    # one folder per pretraining set: the generator refuses to mix parameters in one folder
    spec = pretrain_spec(data)
    tag = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    info = generate_synthmotion(Path(data_dir) / f"synthmotion_{tag}", seed=PRETRAIN_SEED, workers=workers,
                                progress=progress, **{**data, "classes": spec["classes"]})
    train_split = load_split(info["dataset"], info["root"], "train")
    test_split = load_split(info["dataset"], info["root"], "test")
    groups, to_coarse = coarse_labels(train_split.class_names)
    backbones = [load_backbone(name) for name in todo]  # tiny presets: random init, fixed seed
    train_px = load_pixels(train_split, backbones, progress)
    test_px = load_pixels(test_split, backbones, progress)
    fine_tr, fine_te = torch.tensor(train_split.labels), torch.tensor(test_split.labels)

    shared = dict(train_names=list(train_split.class_names), groups=groups, to_coarse=to_coarse,
                  fine_tr=fine_tr, fine_te=fine_te, zoo_dir=zoo_dir, device=dev,
                  pretrain_data={"root": info["root"], "seed": PRETRAIN_SEED, "train_videos": len(train_split),
                                 "heldout_videos": len(test_split), "classes": list(train_split.class_names),
                                 "note": "a SynthMotion set of its own seed; disjoint from the downstream videos"})
    tasks = [dict(shared, name=b.name, rec=recipe(b.name, epochs, data), train_px=train_px[b.name],
                  test_px=test_px[b.name]) for b in backbones]
    del backbones, train_px, test_px  # each task holds its own member's pixels
    if dev.type != "cpu" or jobs == 1 or len(tasks) == 1:
        for task in tasks:
            cards[task["name"]] = train_member(**task)
    else:
        for card in _train_members_at_once(tasks, jobs):
            cards[card["name"]] = card
            if progress:
                probe = card["probe"]["accuracy"]
                print(f"zoo {card['name']}: trained in {card['train_seconds']} s, probe {probe:.3f}", flush=True)
    return {name: cards[name] for name in members}


def zoo_table(cards: dict[str, dict[str, Any]]):
    """Zoo cards as a small pandas DataFrame for display."""
    import pandas as pd

    rows = [{"model": n, "role": c["role"], "objective": c["recipe"]["objective"], "dim": c["dim"],
             "frames": c["frames"], "params": c["params"], "epochs": c["epochs"],
             "probe_acc": round(c["probe"]["accuracy"], 3),
             "random_init_probe_acc": round(c["probe"]["random_init_accuracy"], 3),
             "temporal_probe_acc": round(c["probe"]["temporal_accuracy"], 3),
             "random_init_temporal_probe_acc": round(c["probe"]["temporal_random_init_accuracy"], 3),
             "chance": round(c["probe"]["chance"], 3)} for n, c in cards.items()]
    return pd.DataFrame(rows).set_index("model")
