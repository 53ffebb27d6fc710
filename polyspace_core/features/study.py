"""Stage 01_featurize as notebook calls: data, models, extraction, statistics, a clip browser.

The notebook holds the parameters; these functions read them from the workspace (`ws.p`), so
each notebook cell is one call. The store goes to `<run_dir>/features/<split>/`, where stages
02-05 find it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PolySpaceError

STORE_DIR = "features"


def store_root(ws) -> Path:
    """`runs/<preset>/01_featurize/features`: the feature store root of this preset."""
    return ws.run_dir / STORE_DIR


def check_inputs(params: Mapping[str, Any]) -> None:
    """Stop at once, with one line naming the parameter to set, when 01's inputs are not there:
    the dataset root (featurize_root; a generated SynthMotion set is exempt, 01 writes it) and
    every model (featurize_student, featurize_teachers: backbones.check_source). `params` are
    resolved parameters (workspace.resolve_params), so `polyspace report` runs this before any
    notebook and prepare_dataset at the top of 01, before anything is generated or loaded."""
    from ..backbones import check_source
    from ..datasets import DATASETS

    dataset, root = params["featurize_dataset"], Path(params["featurize_root"])
    if dataset != "synthmotion":
        if dataset not in DATASETS:
            raise PolySpaceError(f"featurize_dataset: {dataset!r} is not a dataset; use synthmotion or one of "
                                 f"{', '.join(DATASETS)}")
        if not root.is_dir():
            raise PolySpaceError(f"featurize_root: {root} not found; set featurize_root to your {dataset} folder "
                                 f"(in params/{params['preset']}.yaml, or -p featurize_root DIR)")
    for key, specs in (("featurize_student", [params["featurize_student"]]),
                       ("featurize_teachers", params["featurize_teachers"])):
        for spec in specs:
            try:
                check_source(spec)
            except PolySpaceError as e:
                raise PolySpaceError(f"{key}: {e}") from None


def prepare_dataset(ws) -> dict[str, Any]:
    """The videos to featurize: for dataset "synthmotion", the set is generated at
    featurize_root if it is not there yet (cached by its marker). Returns the data card.
    First check_inputs: a missing dataset root or model stops here, naming its parameter."""
    from ..datasets import data_card, generate_synthmotion

    check_inputs(ws.params)
    p = ws.p
    root = ws.path(p.featurize_root)
    if p.featurize_dataset == "synthmotion":
        kwargs = dict(layout=p.featurize_synth_layout, classes=p.featurize_synth_classes,
                      clips_per_class=p.featurize_synth_clips_per_class, frames=p.featurize_synth_frames,
                      size=p.featurize_synth_size, seed=p.featurize_synth_seed, workers=p.featurize_workers,
                      test_fraction=p.featurize_synth_test_fraction)
        try:
            generate_synthmotion(root, **kwargs)
        except PolySpaceError:
            # a set this stage generated earlier with other parameters (or an older generator):
            # it is generated data, so replace it; any other folder is left alone and the error stands
            from ..datasets.synthmotion_layouts import MARKER, PARTIAL

            if not ((root / MARKER).is_file() or (root / PARTIAL).is_file()):
                raise
            print(f"{root}: replacing a SynthMotion set generated with other parameters")
            shutil.rmtree(root)
            generate_synthmotion(root, **kwargs)
        return data_card(root)
    from ..datasets import load_split

    return data_card(load_split(p.featurize_dataset, root, p.featurize_splits[0]))


def data_card_table(card: dict[str, Any]):
    """The data card's classes as a DataFrame (name, description, coarse group, counts per split)."""
    import pandas as pd

    rows = []
    for c in card["classes"]:
        row = {k: c.get(k) for k in ("label", "name", "description", "coarse_group")}
        row.update({f"n_{s}": n for s, n in (c.get("counts") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("label")


def class_strips(ws, split: str = "train"):
    """One row of frames per class (the data helper's figure) for the featurized set."""
    from ..datasets import load_split, plot_class_strips

    dataset = "synthmotion" if ws.p.featurize_dataset == "synthmotion" else ws.p.featurize_dataset
    return plot_class_strips(load_split(dataset, ws.path(ws.p.featurize_root), split), seed=ws.seed)


def prepare_models(ws) -> dict[str, Any]:
    """The student and teacher specs to extract. With featurize_zoo, the tiny zoo is built (or
    reused) under data/zoo and every spec naming a tiny preset points at its trained copy.
    Returns {"student", "teachers", "zoo": {name: card}}."""
    from ..backbones import TINY_PRESETS
    from .zoo import build_zoo

    p = ws.p
    specs = [p.featurize_student, *p.featurize_teachers]
    cards: dict[str, Any] = {}
    if p.featurize_zoo:
        members = [s for s in specs if s in TINY_PRESETS]
        if not members:
            raise PolySpaceError("featurize_zoo: true but no featurize_student/featurize_teachers names a tiny "
                                 "preset (vjepa2-tiny, videomae-tiny, timesformer-tiny, vivit-tiny)")
        cards = build_zoo(ws.data_dir / "zoo", ws.data_dir / "synthmotion_pretrain", members=members,
                          device=str(ws.device), workers=p.featurize_workers)
        specs = [f"{s}={cards[s]['path']}" if s in cards else s for s in specs]
    return {"student": specs[0], "teachers": specs[1:], "zoo": cards}


def models_table(models: dict[str, Any]):
    """The zoo cards as a table when the zoo is used, else the specs that will be loaded."""
    import pandas as pd

    from .zoo import zoo_table

    if models["zoo"]:
        return zoo_table(models["zoo"])
    rows = [{"role": "student", "spec": models["student"]}] + [{"role": "teacher", "spec": t}
                                                                for t in models["teachers"]]
    return pd.DataFrame(rows)


def run_featurize(ws, models: dict[str, Any]) -> dict[str, Any]:
    """featurize every split in featurize_splits into the store root; split -> FeaturizeResult."""
    from ..datasets import load_split
    from .featurize import featurize

    p = ws.p
    dataset = p.featurize_dataset
    results = {}
    for split_name in p.featurize_splits:
        split = load_split(dataset, ws.path(p.featurize_root), split_name)
        results[split_name] = featurize(
            split, models["student"], models["teachers"], store_root(ws), tokens=p.featurize_tokens,
            dtype=p.featurize_dtype, shard_size=p.featurize_shard_size, batch=p.featurize_batch,
            workers=p.featurize_workers, device=ws.device, frames=p.featurize_frames,
            replace_stale=True)  # this preset's run dir: other settings replace it, the same resume
    return results


def results_table(results: dict[str, Any]):
    """One row per split: videos, ok, failures, shards computed/reused, decodes, clips/s."""
    import pandas as pd

    rows = []
    for split, r in results.items():
        rows.append({"split": split, "videos": r.num_samples, "ok": r.num_ok, "failed": len(r.failures),
                     "shards_computed": len(r.shards_computed), "shards_reused": len(r.shards_reused),
                     "videos_decoded": r.videos_decoded, "frames_decoded": r.frames_decoded,
                     "clips_per_s": round(r.clips_per_s, 2) if r.timings.get("videos") else None})
    return pd.DataFrame(rows).set_index("split")


def feature_statistics(ws, split: str = "train"):
    """Per-model dims, token norms, dtype and disk size of one split, as a DataFrame."""
    from .stats import store_summary, summary_frame
    from .store import FeatureStore

    return summary_frame(store_summary(FeatureStore.open(store_root(ws) / split)))


def _clip_frames(path: str, n: int = 8) -> np.ndarray:
    from ..video import probe, read_frames, uniform_indices

    info = probe(path)
    return read_frames(path, uniform_indices(info.num_frames, n))


def show_clip_features(ws, split: str | None = None, index: int | None = None):
    """A clip's frames with each model's (T, D) token features. Interactive workspaces get a
    split dropdown and a sample slider (ipywidgets); otherwise the same figure, static, for
    featurize_browse_index of the first split. Returns the widget or the Figure."""
    import matplotlib.pyplot as plt

    from .plots import plot_token_features
    from .store import FeatureStore

    split = split or ws.p.featurize_splits[0]
    index = ws.p.featurize_browse_index if index is None else index

    def figure(split_name: str, i: int):
        store = FeatureStore.open(store_root(ws) / split_name)
        if not 0 <= i < len(store):
            raise PolySpaceError(f"featurize_browse_index {i}: the {split_name} split has {len(store)} samples")
        frames = _clip_frames(store.paths[i]) if store.ok[i] else None
        return plot_token_features(store, i, frames)

    if not ws.interactive:
        return figure(split, index)
    import ipywidgets as widgets
    from IPython.display import display

    splits = list(ws.p.featurize_splits)
    sizes = {s: len(FeatureStore.open(store_root(ws) / s)) for s in splits}
    pick_split = widgets.Dropdown(options=splits, value=split, description="split")
    pick_index = widgets.IntSlider(value=index, min=0, max=sizes[split] - 1, description="sample")
    out = widgets.Output()

    def redraw(*_):
        pick_index.max = sizes[pick_split.value] - 1
        with out:
            out.clear_output(wait=True)
            fig = figure(pick_split.value, pick_index.value)
            display(fig)
            plt.close(fig)

    pick_split.observe(redraw, names="value")
    pick_index.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([pick_split, pick_index]), out])


def stage_metrics(ws, results: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """metrics.json of the stage: per split counts and throughput, per model dims, store size,
    and the zoo's probe accuracies when the zoo was used."""
    from .store import FeatureStore

    metrics: dict[str, Any] = {"store": str(store_root(ws))}
    for split, r in results.items():
        store = FeatureStore.open(store_root(ws) / split)
        metrics[f"{split}_videos"] = r.num_samples
        metrics[f"{split}_ok"] = r.num_ok
        metrics[f"{split}_failed"] = len(r.failures)
        metrics[f"{split}_store_mb"] = round(store.disk_bytes() / 2**20, 3)
        metrics[f"{split}_videos_decoded"] = store.manifest["decodes"]["videos_decoded"]
        if r.timings.get("videos"):
            metrics[f"{split}_clips_per_s"] = round(r.clips_per_s, 3)
    store = FeatureStore.open(store_root(ws) / next(iter(results)))
    metrics["dtype"] = store.manifest["dtype"]
    metrics["tokens"] = store.tokens
    metrics["student"] = store.student
    metrics["teachers"] = store.teachers
    for m in store.models:
        metrics[f"dim_{m}"] = store.shape(m)[1]
        metrics[f"T_{m}"] = store.shape(m)[0]
    for name, card in models.get("zoo", {}).items():
        metrics[f"zoo_probe_acc_{name}"] = round(card["probe"]["accuracy"], 4)
    return metrics
