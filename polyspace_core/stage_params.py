"""Every notebook parameter, declared once with its type.

Values live in the flat preset files `params/<preset>.yaml`; the notebook's `parameters` cell
holds the `default` preset's values. A key may be used by several stages (e.g. `teachers`);
it then has one type everywhere. Type specs:

    bool, int, float, str, path, optional[path], optional[str], optional[int],
    list[str], list[int], list[float], choice:a|b|c, auto_bool (true, false or "auto")
"""

from __future__ import annotations

STAGES = [
    "01_featurize",
    "02_train_converters",
    "03_alignment",
    "04_train_fusion",
    "05_eval_downstream",
    "06_efficiency",
    "07_ffn_tfd",
    "08_colorization",
]

# The stages whose outputs each notebook reads from runs/<preset>/ (what its study finds there):
# a sweep point is stale when one of them ran again, and `polyspace report --jobs N` starts a
# stage only when those of them in the same run have finished.
UPSTREAM: dict[str, list[str]] = {
    "01_featurize": [],
    "02_train_converters": ["01_featurize"],
    "03_alignment": ["01_featurize", "02_train_converters"],
    "04_train_fusion": ["01_featurize", "02_train_converters"],
    "05_eval_downstream": ["01_featurize", "04_train_fusion"],
    "06_efficiency": ["01_featurize", "04_train_fusion", "05_eval_downstream"],
    "07_ffn_tfd": [],
    "08_colorization": [],
}

# Keys every notebook has.
COMMON: dict[str, str] = {
    "preset": "str",            # names the preset; outputs go to runs/<preset>/, reports/<preset>/
    "seed": "int",
    "device": "str",            # auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps
    "interactive": "auto_bool",  # widgets; auto = on in JupyterLab, off in headless runs
}

# Each stage's own keys. Add a stage's keys here, its values to params/default.yaml and
# params/smoke.yaml, and the same default values to the notebook's parameters cell.
STAGE_PARAMS: dict[str, dict[str, str]] = {
    "01_featurize": {
        # synthmotion (generated if missing) or a parser name: hmdb51, ucf101, ...
        "featurize_dataset": "str",
        "featurize_root": "path",                # the dataset folder
        "featurize_synth_layout": "str",         # SynthMotion only: layout, classes, clips, frames, size, seed
        "featurize_synth_classes": "int",
        "featurize_synth_clips_per_class": "int",
        "featurize_synth_frames": "int",
        "featurize_synth_size": "int",
        "featurize_synth_seed": "int",
        "featurize_synth_test_fraction": "float",  # share of each class in the test split
        "featurize_splits": "list[str]",         # every split 02-05 read: train, validation, test
        "featurize_student": "str",              # registry key, tiny preset, hub id or local dir (NAME=SOURCE ok)
        "featurize_teachers": "list[str]",
        "featurize_zoo": "bool",                 # tiny presets -> their trained copies in data/zoo (built once)
        "featurize_tokens": "choice:temporal|full|clip",
        "featurize_dtype": "choice:float32|float16|bfloat16",
        "featurize_frames": "int",               # frames for models that take any count (V-JEPA 2)
        "featurize_batch": "int",
        "featurize_workers": "int",
        "featurize_shard_size": "int",
        "featurize_browse_index": "int",         # the clip the static feature figure shows
    },
    "02_train_converters": {
        "converter_features": "optional[path]",  # feature store root; none = the store 01_featurize wrote
        "converter_teachers": "list[str]",       # empty = every teacher in the store
        "converter_kinds": "list[str]",          # procrustes, ridge, mlp, attention (A), resampler (B), linear (C)
        "converter_losses": "list[str]",         # loss weightings, e.g. l2+cos, l2+0.1*nce (closed forms ignore them)
        "converter_epochs": "int",
        "converter_batch": "int",
        "converter_lr": "float",
        "converter_hidden": "int",               # trunk width of mlp / attention / resampler
        "converter_depth": "int",
        "converter_select_on": "choice:r2|cosine|cka|mutual_knn|retrieval_top1",  # validation metric
        "converter_eval_split": "str",           # held-out split of the fidelity table
        "seeds": "list[int]",                   # the selected converters retrained per seed (the grid: the first)
    },
    "03_alignment": {
        "alignment_features": "optional[path]",    # feature store root; none = the store 01_featurize wrote
        "alignment_converters": "optional[path]",  # converter set; none = the one 02_train_converters selected
        "alignment_splits": "list[str]",           # the first is shown in the report and in metrics.json
        "alignment_metrics": "list[str]",          # linear_cka, rbf_cka, debiased_cka, minibatch_cka, mutual_knn
        "alignment_layerwise": "bool",             # layer-wise CKA: re-run the backbones on a few videos
        "alignment_layer_clips": "int",
    },
    "04_train_fusion": {
        "cached": "bool",       # True: feature store -> converters -> head; False: decode videos
        "fusion_features": "optional[path]",    # feature store root; none = the store 01_featurize wrote
        "fusion_converters": "optional[path]",  # converter set; none = the one 02_train_converters selected
        "fusion_epochs": "int",
        "fusion_batch": "int",                  # global batch (split across processes under DDP)
        "fusion_lr": "float",
        "fusion_rank": "int",                   # rank of each teacher's projection into the student space
        "fusion_pooling": "choice:mean|attention",
        "fusion_gate_l1": "float",              # gate sparsity penalty (0 = off)
        "fusion_finetune_converters": "bool",   # train the converters with the head (else frozen)
        "fusion_workers": "int",                # video mode: decoding worker processes (0 = in the kernel)
        "seeds": "list[int]",                   # training repeated per seed (empty = seed); the first is kept
    },
    "05_eval_downstream": {
        "eval_split": "str",                    # the split reported once (test)
        "eval_probe_epochs": "int",             # linear probes: epochs (selected on validation)
        "eval_probe_lr": "float",
        "eval_costs": "bool",                   # count GFLOPs per clip (backbones included)
        "seeds": "list[int]",                   # baselines retrained per seed, each against 04's run of it
    },
    "06_efficiency": {
        "cost_student": "str",              # as-run student, used when 04 left no fusion checkpoint
        "cost_teachers": "list[str]",       # as-run teachers, idem
        "cost_converter": "str",            # converter kind, idem
        "cost_num_classes": "int",          # classifier size, idem
        "cost_real_student": "str",         # real-size counterparts costed with the as-run settings
        "cost_real_teachers": "list[str]",
        "cost_backbones": "list[str]",      # real-size backbones in the FLOPs table (tiny presets always added)
        "cost_tsm_arch": "str",             # TSM/FFN ResNet costed at 224 px
        "cost_tsm_frames": "list[int]",
        "cost_colorize_size": "int",        # colorization working size (pixels, square)
        "latency_max_gflops": "float",      # time only what costs at most this per clip/frame
        "latency_repeats": "int",           # timed repeats after one warm-up (median reported)
    },
    "07_ffn_tfd": {
        "ffn_dataset": "choice:synthmotion|ssv2",  # generated SynthMotion, or real Something-Something V2
        "ffn_root": "path",               # SynthMotion in the SSv2 layout (generated once, reused), or the SSv2 folder
        "ffn_classes": "list[str]",       # SynthMotion class names
        "ffn_clips_per_class": "int",
        "ffn_video_frames": "int",        # frames per generated video (>= the highest frame count)
        "ffn_video_size": "int",          # generated frame side in pixels; SSv2: the short side frames are resized to
        "ffn_crop": "int",                # training crop (train) / centre crop (eval) side
        "ffn_crop_mode": "choice:random|multiscale",  # training crop: random, or TSN's multi-scale crop (official)
        "ffn_frame_cache": "optional[path]",  # on-disk frame cache (SSv2); none: SynthMotion in memory, SSv2 streamed
        "ffn_frame_cache_format": "choice:uint8|jpeg",  # uint8: the decoded pixels; jpeg: lossy, smaller
        "ffn_frame_cache_quality": "int",  # JPEG quality (1-100) of ffn_frame_cache_format jpeg
        "ffn_workers": "int",             # DataLoader worker processes for training
        "ffn_train_frames": "list[int]",  # FFN's frame counts; the vanilla TSM trains the highest
        "ffn_extra_frames": "list[int]",  # evaluated but never trained
        "ffn_per_frame_baselines": "bool",  # also a vanilla TSM trained at each lower frame count
        "ffn_arch": "str",                # TSM ResNet preset (polyspace_core.ffn.ARCHS)
        "ffn_pretrained": "choice:auto|imagenet|none",  # auto: ImageNet for resnet50/101, none for tiny/small
        "ffn_imagenet_weights": "optional[path]",  # torchvision ResNet file; none: torchvision's cache folder
        "ffn_epochs": "int",
        "ffn_batch": "int",
        "ffn_lr": "float",
        "ffn_lr_batch": "optional[int]",  # linear scaling: ffn_lr is the lr at this total batch; none: as given
        "ffn_schedule": "choice:cosine|step",
        "ffn_lr_steps": "list[int]",      # step schedule: epochs after which the lr is multiplied by 0.1
        "ffn_momentum": "float",
        "ffn_weight_decay": "float",
        "ffn_fc_lr_mult": "float",        # classifier lr multiplier (x5 fine-tuning recipe; 1 from scratch)
        "ffn_lambda_kl": "float",
        "ffn_seeds": "list[int]",               # TSM and FFN repeated per seed (empty = seed; the first must be seed)
    },
    "08_colorization": {
        "color_root": "path",                   # SynthColor set (generated once, reused)
        "color_clips": "int",                   # clips in all (60/20/20 train/validation/test)
        "color_frames": "int",                  # frames per clip
        "color_size": "int",                    # frame side in pixels (the working size)
        "color_synth_seed": "int",
        "color_test_clips": "optional[int]",    # SynthColor test clips; none = 20% of color_clips
        "color_flow": "choice:dis|farneback|raft|memflow",  # temporal branch flow backend
        "color_raft_weights": "optional[path]",  # local torchvision RAFT weights (color_flow raft)
        "color_memflow_path": "optional[path]",  # MemFlow checkout + checkpoint (color_flow memflow)
        "color_memflow_ckpt": "optional[path]",
        # local SwinModel folder for the embedding; none = frozen random convs
        "color_swin_checkpoint": "optional[path]",
        "color_exemplar_checkpoint": "optional[path]",  # ExemplarBranch folder: Strategy 1, phase A skipped
        "color_checkpoint": "optional[path]",   # FusionSystem folder trained elsewhere: scored, nothing trained
        "color_exemplar_epochs": "int",         # phase A: exemplar branch on single frames
        "color_fusion_epochs": "int",           # phase B: whole system on sequences
        "color_batch": "int",                   # frames per phase-A step
        "color_frames_per_clip": "int",         # random frames of each clip per phase-A epoch
        "color_fusion_batch": "int",            # sequences per phase-B step
        "color_seq_len": "optional[int]",       # frames per training sequence; none = whole clip
        "color_lr_exemplar": "float",           # phase A
        "color_lr_exemplar_finetune": "float",  # phase B, exemplar part
        "color_lr_fusion": "float",             # phase B, fusion UNet
        "color_warp_weight": "float",           # phase A: weight of the correspondence's own L1
        "color_temporal_weight": "float",       # phase B: temporal consistency term
        "color_mixed_precision": "choice:no|fp16|bf16",
        "color_strip_clips": "int",             # test clips whose frames the strips and the slider show
        "seeds": "list[int]",                   # phase B (the colorization fusion) repeated per seed
        # what the methods are scored on: SynthColor test, or real video under the first-frame protocol
        "color_eval_dataset": "choice:synthcolor|davis|videos",
        "color_eval_root": "optional[path]",     # DAVIS root (JPEGImages/480p) or a folder of videos
        "color_eval_split": "optional[str]",     # DAVIS ImageSets list, e.g. 2017/val; none = every sequence
        "color_eval_sequences": "list[str]",     # keep only these sequences / video stems; [] = all
        "color_eval_size": "int",                # working short side (px) for davis / videos
        "color_eval_frames": "optional[int]",    # first frames of each sequence; none = all
        "color_metric_flow": "choice:auto|raft_large|raft_small|farneback|dis",  # warp-error flow
        "color_metric_raft_weights": "optional[path]",  # local RAFT weights for the warp error
        "color_fid_weights": "optional[path]",   # torch-fidelity Inception file; none = the hub cache's, else skip
    },
}


def stage_spec(stage: str) -> dict[str, str]:
    """Name -> type spec of every parameter the stage accepts (common keys first)."""
    from .errors import PolySpaceError

    if stage not in STAGE_PARAMS:
        raise PolySpaceError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return {**COMMON, **STAGE_PARAMS[stage]}


# Keys a preset may set for the report runner rather than for a notebook: `report_notebooks`,
# the notebooks `make report PRESET=<it>` runs when NB is not given (e.g. "01,02,03,04,05,06" for
# a real dataset, whose preset does not configure the FFN and colorization demos).
REPORT_KEYS: dict[str, str] = {"report_notebooks": "str"}


def all_params() -> dict[str, str]:
    """Every parameter of every stage; a key used by several stages must have one type."""
    merged: dict[str, str] = dict(COMMON)
    for stage, spec in STAGE_PARAMS.items():
        for name, kind in spec.items():
            if merged.setdefault(name, kind) != kind:
                raise TypeError(f"parameter {name!r} has type {merged[name]} elsewhere but {kind} in {stage}")
    return merged
