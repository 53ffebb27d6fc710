"""Feature extraction: decode each video once, run the student and every teacher, write the store.

Per video: one `decode_clips` call with one ClipRequest per model (each model's own frame
count, uniform sampling over the annotated window), so a frame several models use is decoded
once; each model's clip then goes through that model's own processor (resize, crop,
normalise) in the loader workers. The main process batches the pixels per model and runs the
forward passes under the one precision policy (`backbones.autocast_dtype_for`: autocast in the
store's dtype, bf16 on any device, fp16 on CUDA), recorded per model in the manifest ("autocast"),
which video-mode training follows for the student.

Work is cut into shards of `shard_size` consecutive samples; batches never cross a shard, and
under `torchrun`/`accelerate launch` shard k goes to rank k % world_size, so a multi-process
run computes exactly the batches a single-process run does and yields the same store. A
finished shard is never recomputed: rerunning the same command resumes (see store.py). Each
batch's features are cast and written into their shard's file as soon as they are computed
(store.ShardWriter), so memory holds a few batches whatever the shard size.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backbones import TINY_PRESETS, VideoBackbone, autocast_dtype_for, load_backbones, preprocess_clips
from ..errors import PolySpaceError
from ..provenance import provenance
from .store import FeatureStore, FeatureStoreWriter, dtype_name, sha256_file

ON_ERROR = ("skip", "error")


@dataclass
class FeaturizeResult:
    """What a featurize run did. timings are seconds summed over this process's work:
    decode (in loader workers), preprocess[model] (processor, in workers), forward[model]
    (main process), write (shard serialisation + fsync), total (wall clock of the loop)."""
    store_dir: Path
    num_samples: int
    num_ok: int
    failures: list[tuple[int, str, str]]
    shards_computed: list[int]
    shards_reused: list[int]
    videos_decoded: int
    frames_decoded: int
    timings: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1

    @property
    def clips_per_s(self) -> float:
        done = self.timings.get("videos", 0)
        return done / self.timings["total"] if self.timings.get("total") else float("nan")

    def summary(self) -> str:
        lines = [f"features: {self.store_dir} ({self.num_ok}/{self.num_samples} ok; shards computed "
                 f"{len(self.shards_computed)}, reused {len(self.shards_reused)}; "
                 f"{self.videos_decoded} video decodes, {self.frames_decoded} frames)"]
        for index, path, reason in self.failures:
            lines.append(f"  failed #{index} {path}: {reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the per-video work done in loader workers


class ClipSource(torch.utils.data.Dataset):
    """Item i -> one decode of video i, each model's clip through its processor.

    Returns {"index", "pixels": {model: (T, 3, h, w) float32}, "frames_decoded", "decode_s",
    "preprocess_s": {model: s}, "clip": {"frames_available", "fill"}} or, when the video cannot be
    decoded or its window holds fewer than `min_frames` frames, {"index", "error": reason} (the
    main process applies the on_error policy, so the reason survives worker processes). A window
    shorter than a model's clip is looped (0 1 2 0 1 2 ...), and "fill" says so.
    """

    def __init__(self, items: Sequence[Any], models: Sequence[tuple[str, int, Any]], backend: str = "auto",
                 min_frames: int = 1):
        from ..video.multi import ClipRequest

        self.items = list(items)
        self.models = list(models)  # (name, frames, processor): no network weights in workers
        self.requests = [ClipRequest(name, frames, sampling="uniform", short_policy="loop")
                         for name, frames, _ in models]
        self.backend = backend
        self.min_frames = int(min_frames)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from ..video.decode import VideoDecodeError
        from ..video.multi import decode_clips

        item = self.items[i]
        start = getattr(item, "start_frame", None)
        end = getattr(item, "end_frame", None)
        window = (start, end) if start is not None or end is not None else None
        t0 = time.perf_counter()
        try:
            decoded = decode_clips(item.path, self.requests, train=False, window=window, backend=self.backend)
        except VideoDecodeError as e:
            return {"index": i, "error": str(e)}
        t1 = time.perf_counter()
        available = (decoded.info.num_frames if end is None else int(end)) - (start or 0)
        if available < self.min_frames:
            return {"index": i, "error": f"{item.path}: {available} frames, fewer than min_frames={self.min_frames} "
                                         f"(short video skipped)"}
        fill = "loop" if any(frames > available for _, frames, _ in self.models) else None
        pixels, prep = {}, {}
        for name, frames, processor in self.models:
            tp = time.perf_counter()
            pixels[name] = preprocess_clips(processor, [decoded.clips[name]], frames, name)[0]
            prep[name] = time.perf_counter() - tp
        return {"index": i, "pixels": pixels, "frames_decoded": decoded.frames_decoded,
                "decode_s": t1 - t0, "preprocess_s": prep, "clip": {"frames_available": available, "fill": fill}}


def _keep_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch  # batching per model happens in the main loop (failed items have no pixels)


def shard_batches(ranges: Sequence[tuple[int, int]], shard_ids: Sequence[int], batch: int) -> list[list[int]]:
    """Batches of sample ids that never cross a shard: the same for any number of processes."""
    out = []
    for k in shard_ids:
        start, end = ranges[k]
        out.extend(list(range(s, min(s + batch, end))) for s in range(start, end, batch))
    return out


# --------------------------------------------------------------------------------------------
# distributed helpers (torchrun / accelerate launch); plain single process otherwise


class _Dist:
    def __init__(self, device: str | torch.device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.state = None
        want = str(device)
        if self.world_size > 1:
            from accelerate import PartialState

            self.state = PartialState(cpu=want == "cpu")
            self.rank, self.world_size = self.state.process_index, self.state.num_processes
            self.device = self.state.device if want in ("auto", "cuda") else torch.device(want)
        else:
            from ..seeding import best_device

            self.device = best_device(want)

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def _weights_id(backbone: VideoBackbone) -> str:
    """What identifies the weights: random-init preset, hub commit, or sha256 of local files."""
    source = Path(backbone.source)
    if backbone.source in TINY_PRESETS:
        return f"random-init preset {backbone.source}"
    if source.is_dir():
        files = sorted(list(source.glob("*.safetensors")) + list(source.glob("*.bin")))
        return "sha256:" + ",".join(sha256_file(f)[:16] for f in files)
    commit = getattr(backbone.model.config, "_commit_hash", None)
    return f"hub commit {commit}" if commit else "hub (commit unknown)"


def videos_id(paths: Sequence[str | os.PathLike]) -> str:
    """A hash of every video's path, size and modification time: regenerated or replaced videos
    under the same names give another id, so their old features are never resumed."""
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# the entry point


def featurize(split: Any, student: str | VideoBackbone, teachers: Sequence[str | VideoBackbone], out: str | os.PathLike,
              *, tokens: str = "temporal", dtype: str = "float32", shard_size: int = 1000, batch: int = 8,
              workers: int = 0, device: str | torch.device = "auto", on_error: str = "skip",
              frames: int = 16, min_frames: int = 1, backend: str = "auto", overwrite: bool = False,
              replace_stale: bool = False,
              progress: bool = True, local_files_only: bool | None = None) -> FeaturizeResult:
    """Extract token features of every video of `split` for a student and teachers.

    split: a DatasetSplit (`polyspace_core.datasets.load_split`). student/teachers: backbone
    specs (registry key, tiny preset, hub id, local dir, optionally NAME=SOURCE) or loaded
    VideoBackbones. out: store root; the split goes to `<out>/<split.split>/`. tokens:
    temporal | full | clip. dtype: float32 | float16 | bfloat16 (storage, and the autocast dtype
    of the forward passes: `autocast_dtype_for`).
    on_error: "skip" (record the failure, continue) or "error" (stop at the first bad video).
    frames: clip length for models that take any count (V-JEPA 2). min_frames: a video whose
    (annotated) window holds fewer frames is left out with its reason recorded; shorter windows
    than a clip are looped, and the manifest's "clips" records frames available and the fill per
    sample. overwrite: delete what the
    split folder holds and start over. replace_stale: delete it only if it was made with other
    settings (models, weights, dtype, tokens, shard size, videos); without either, other settings
    are an error and the same settings resume.
    Returns a FeaturizeResult; the store is `FeatureStore.open(result.store_dir)`.
    """
    if on_error not in ON_ERROR:
        raise PolySpaceError(f"on_error {on_error!r}: use skip or error")
    if not isinstance(batch, int) or batch < 1:
        raise PolySpaceError(f"batch {batch!r}: must be a positive integer")
    if not isinstance(workers, int) or workers < 0:
        raise PolySpaceError(f"workers {workers!r}: must be 0 or more")
    if not isinstance(min_frames, int) or isinstance(min_frames, bool) or min_frames < 1:
        raise PolySpaceError(f"min_frames {min_frames!r}: must be a positive integer")
    if len(split) == 0:
        raise PolySpaceError(f"{getattr(split, 'root', '?')}: split {getattr(split, 'split', '?')!r} has no videos")
    store_dtype = dtype_name(dtype)
    dist = _Dist(device)
    specs = [student, *teachers]
    to_load = [s for s in specs if not isinstance(s, VideoBackbone)]
    loaded = iter(load_backbones(to_load, frames=frames, device=dist.device, local_files_only=local_files_only))
    backbones = [s.to(dist.device) if isinstance(s, VideoBackbone) else next(loaded) for s in specs]
    names = [b.name for b in backbones]
    if len(set(names)) != len(names):
        raise PolySpaceError(f"models {names}: each needs its own name; write NAME=SOURCE")

    autocast = autocast_dtype_for(store_dtype, dist.device)
    models = []
    for role, b in zip(["student"] + ["teacher"] * len(teachers), backbones):
        # "autocast": the precision the forward ran in (None: float32); video mode runs the student so
        models.append({**b.describe(tokens), "role": role, "weights": _weights_id(b),
                       "autocast": dtype_name(autocast) if autocast is not None else None})
    store_dir = Path(out) / split.split
    writer = FeatureStoreWriter(
        store_dir, models=models, dtype=store_dtype, tokens=tokens, shard_size=shard_size,
        paths=[str(it.path) for it in split.items], labels=[int(it.label) for it in split.items],
        class_names=list(split.class_names),
        dataset={"name": split.dataset, "split": split.split, "root": str(split.root), "notes": list(split.notes)},
        inputs_id=videos_id([it.path for it in split.items]),
        policy={"min_frames": min_frames} if min_frames > 1 else None)
    if dist.rank == 0:
        if overwrite:
            writer.clear()
        elif replace_stale:
            try:
                writer.check_compatible()
            except PolySpaceError:
                writer.clear()
        writer.check_compatible()
    dist.barrier()

    mine = [k for k in range(writer.num_shards) if k % dist.world_size == dist.rank]
    todo = writer.pending(mine)
    reused = [k for k in mine if k not in todo]
    source = ClipSource(split.items, [(b.name, b.frames, b.processor) for b in backbones], backend=backend,
                        min_frames=min_frames)
    batches = shard_batches(writer.ranges, todo, batch)
    loader = torch.utils.data.DataLoader(source, batch_sampler=batches, num_workers=workers,
                                         collate_fn=_keep_list, persistent_workers=False)

    from tqdm.auto import tqdm

    timings: dict[str, Any] = {"decode": 0.0, "preprocess": defaultdict(float), "forward": defaultdict(float),
                               "write": 0.0, "videos": 0}
    failures: list[tuple[int, str, str]] = []
    bar = tqdm(total=sum(len(b) for b in batches), desc=f"featurize {split.split}", unit="video",
               disable=not progress or dist.rank != 0)
    shard_of = {i: k for k in todo for i in range(*writer.ranges[k])}
    # one ShardWriter per shard being computed: rows go to disk batch by batch, so memory holds
    # a few batches, never a shard (rows of failed samples are NaN, written when the shard ends)
    open_shards: dict[int, dict[str, Any]] = {}
    t_start = time.perf_counter()
    try:
        for items in loader:
            k = shard_of[items[0]["index"]]
            if k not in open_shards:
                start, end = writer.ranges[k]
                open_shards[k] = {"writer": writer.open_shard(k), "status": ["ok"] * (end - start),
                                  "clips": [None] * (end - start), "seen": 0, "videos": 0, "frames": 0}
            shard = open_shards[k]
            start = writer.ranges[k][0]
            good = []
            for it in items:
                shard["seen"] += 1
                if "error" in it:
                    if on_error == "error":
                        raise PolySpaceError(f"{it['error']} (featurize --on_error error; use --on_error skip to "
                                             f"record it and continue)")
                    shard["status"][it["index"] - start] = f"failed: {it['error']}"
                    failures.append((it["index"], str(split.items[it["index"]].path), it["error"]))
                    continue
                good.append(it)
                shard["clips"][it["index"] - start] = it["clip"]
                shard["videos"] += 1
                shard["frames"] += it["frames_decoded"]
                timings["decode"] += it["decode_s"]
                for name, s in it["preprocess_s"].items():
                    timings["preprocess"][name] += s
            if good:
                rows = torch.tensor([it["index"] - start for it in good])
                for b in backbones:
                    pixels = torch.stack([it["pixels"][b.name] for it in good])
                    tf = time.perf_counter()
                    feats = b.features(pixels, tokens, autocast_dtype=autocast)
                    timings["forward"][b.name] += time.perf_counter() - tf
                    tw = time.perf_counter()
                    shard["writer"].write_rows(b.name, rows, feats)
                    timings["write"] += time.perf_counter() - tw
                    del feats, pixels
            timings["videos"] += len(items)
            bar.update(len(items))
            start, end = writer.ranges[k]
            if shard["seen"] == end - start:
                tw = time.perf_counter()
                shard["writer"].finish(shard["status"], shard["videos"], shard["frames"], shard["clips"])
                timings["write"] += time.perf_counter() - tw
                del open_shards[k]
    finally:
        for shard in open_shards.values():  # an interrupted shard leaves no temp file behind
            shard["writer"].close()
    bar.close()
    timings["total"] = time.perf_counter() - t_start
    timings["preprocess"] = dict(timings["preprocess"])
    timings["forward"] = dict(timings["forward"])
    dist.barrier()

    if dist.rank == 0:
        store = writer.finalize(provenance(Path(__file__).resolve().parents[2], dist.device,
                                           world_size=dist.world_size),
                                extra={"frames_arg": frames, "sampling": "uniform over the annotated window"})
    dist.barrier()
    if dist.rank != 0:
        store = FeatureStore.open(store_dir)
    decodes = store.manifest["decodes"]
    return FeaturizeResult(store_dir=store_dir, num_samples=len(store), num_ok=int(store.ok.sum()),
                           failures=store.failures,
                           shards_computed=todo, shards_reused=reused,
                           videos_decoded=decodes["videos_decoded"], frames_decoded=decodes["frames_decoded"],
                           timings=timings, rank=dist.rank, world_size=dist.world_size)
