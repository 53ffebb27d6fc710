"""Costs of any backbone from its checkpoint's config alone (issue 17): a local folder or a hub id
outside the catalogue (read through the HF cache with HF_HUB_OFFLINE), counted on the meta device
and checked against a direct FlopCounterMode count and the ViT formula; eval --baselines reports
them, and a model whose config cannot be read stops eval before any baseline is trained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from polyspace_core.backbones import ARCHS
from polyspace_core.backbones.catalog import REAL_BACKBONES, backbone_cost, resolve_backbone, stored_model_spec
from polyspace_core.backbones.models import _transformers_class as transformers_class
from polyspace_core.cli import main
from polyspace_core.errors import PolySpaceError

# real checkpoint configurations that are not in the catalogue (config kwargs of each class)
OUTSIDE_CATALOGUE = {
    "videomae-huge": ("videomae", dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                                       intermediate_size=5120)),
    "timesformer-hr": ("timesformer", dict(image_size=448, num_frames=16)),
    "vjepa2-vitg-384": ("vjepa2", dict(crop_size=384, hidden_size=1408, num_attention_heads=22,
                                       num_hidden_layers=40, mlp_ratio=48 / 11, frames_per_clip=64)),
    "vivit-large": ("vivit", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                  intermediate_size=4096)),
}


TEACHER_ID = "facebook/vjepa2-vitg-fpc64-384"  # a real hub id the catalogue does not hold


def config_folder(root: Path, name: str) -> Path:
    """config.json + the processor config of a real-size checkpoint, no weights (save_pretrained
    of the config and processor only, like a hub download of those two files)."""
    arch, kwargs = OUTSIDE_CATALOGUE[name]
    folder = root / name
    transformers_class(ARCHS[arch].config_class)(**kwargs).save_pretrained(folder)
    transformers_class(ARCHS[arch].processor_class)().save_pretrained(folder)
    return folder


def direct_count(folder: Path, frames: int, size: int) -> int:
    """FlopCounterMode over the eager-attention model built on meta from the folder's config —
    independent of catalog.py's building and counting."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    arch = ARCHS[config.model_type]
    if arch.key == "vjepa2":
        config.crop_size = size
    else:
        config.image_size, config.num_frames = size, frames
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = transformers_class(arch.model_class)(config, **arch.load_kwargs).eval()
        pixels = torch.empty(1, frames, 3, size, size)
    kwargs = {arch.input_key: pixels, **({"skip_predictor": True} if arch.key == "vjepa2" else {})}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(**kwargs)
    return counter.get_total_flops()


def vit_flops(config, frames: int, size: int) -> int:
    """FLOPs of a VideoMAE encoder by the transformer formula (2 per multiply-add): the tubelet
    embedding plus, per layer, Q/K/V/output projections 8·N·D², the MLP 4·N·D·I and attention
    (Q·Kᵀ and attention·V) 4·N²·D, for N = (frames / tubelet)·(size / patch)² tokens."""
    d, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    patch_volume = config.tubelet_size * config.patch_size ** 2
    n = (frames // config.tubelet_size) * (size // config.patch_size) ** 2
    return 2 * n * d * 3 * patch_volume + layers * (8 * n * d * d + 4 * n * d * inner + 4 * n * n * d)


@pytest.mark.parametrize("name", list(OUTSIDE_CATALOGUE))
def test_a_config_folder_outside_the_catalogue_is_costed_from_its_config(tmp_path, name):
    folder = config_folder(tmp_path, name)
    spec = resolve_backbone(str(folder))
    arch, kwargs = OUTSIDE_CATALOGUE[name]
    assert spec.arch == arch and spec.source == str(folder) and spec.name == name.replace("-", "_")
    assert spec.size == kwargs.get("image_size", kwargs.get("crop_size", 224))
    assert spec.frames == (16 if arch in ("vjepa2", "videomae", "timesformer") else 32)
    measured = backbone_cost(spec)
    if arch == "videomae":
        # VideoMAE builds its position table in a Python loop (seconds at videomae-huge's size), so
        # it is built once here: the formula stands for the direct count it equals on the
        # smaller config of test_vit_flops_follow_the_token_count
        from transformers import AutoConfig

        assert measured.flops == vit_flops(AutoConfig.from_pretrained(folder), spec.frames, spec.size)
    else:
        assert measured.flops == direct_count(folder, spec.frames, spec.size)
    assert measured.spec["source"] == str(folder) and measured.params > 0


def test_vit_flops_follow_the_token_count(tmp_path):
    """A VideoMAE config folder (videomae-small's dims: building videomae-huge's position table
    takes seconds) at its own clip and at fewer frames / a smaller crop: the count is the
    transformer formula each time, so it scales with N (linear terms) and N² (attention)."""
    from transformers import VideoMAEConfig, VideoMAEVideoProcessor

    config = VideoMAEConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
    folder = tmp_path / "videomae-small"
    config.save_pretrained(folder)
    VideoMAEVideoProcessor().save_pretrained(folder)
    counts = {}
    for frames, size in ((16, 224), (8, 224), (16, 112)):  # (16, 224): the config's own clip
        counts[frames, size] = backbone_cost(resolve_backbone(str(folder), frames=frames, size=size)).flops
        assert counts[frames, size] == vit_flops(config, frames, size)
    assert counts[16, 112] == direct_count(folder, 16, 112)  # the formula is what FlopCounterMode counts
    # half the frames halve the linear work and quarter the attention: between 1/4 and 1/2
    assert counts[16, 224] / 4 < counts[8, 224] < counts[16, 224] / 2
    # half the side: a quarter of the tokens
    assert counts[16, 224] / 16 < counts[16, 112] < counts[16, 224] / 4


def test_a_hub_id_outside_the_catalogue_is_read_from_the_hf_cache_offline(tmp_path, offline_hf_cache):
    folder = config_folder(tmp_path, "timesformer-hr")
    offline_hf_cache.add("facebook/timesformer-hr-finetuned-k600", folder)
    spec = resolve_backbone("facebook/timesformer-hr-finetuned-k600")
    assert (spec.name, spec.arch, spec.frames, spec.size) == ("timesformer_hr_finetuned_k600", "timesformer", 16, 448)
    assert spec.source == "facebook/timesformer-hr-finetuned-k600"
    assert backbone_cost(spec).flops == backbone_cost(resolve_backbone(str(folder))).flops
    # the catalogue's hub ids still need no cache at all
    assert resolve_backbone("MCG-NJU/videomae-base") == REAL_BACKBONES["videomae_base"]
    # a hub id that is not cached: one line naming it and what to do
    with pytest.raises(PolySpaceError) as error:
        resolve_backbone("someone/videomae-giant")
    message = str(error.value)
    assert "\n" not in message and "'someone/videomae-giant'" in message and "HF_HUB_OFFLINE" in message


def test_a_config_that_is_not_a_video_backbone_is_refused(tmp_path):
    from transformers import ViTConfig

    ViTConfig().save_pretrained(tmp_path / "vit")
    with pytest.raises(PolySpaceError, match="'vit' checkpoint, not one of the video backbones"):
        resolve_backbone(str(tmp_path / "vit"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolySpaceError, match="cannot read the config of the local folder"):
        resolve_backbone(str(tmp_path / "empty"))


def test_a_stored_model_is_costed_at_the_clip_it_was_extracted_with(tmp_path):
    folder = config_folder(tmp_path, "vjepa2-vitg-384")
    spec = stored_model_spec("student", {"source": str(folder), "clip": {"frames": 32, "height": 256}})
    assert (spec.name, spec.frames, spec.size, spec.config["crop_size"]) == ("student", 32, 256, 256)
    with pytest.raises(PolySpaceError, match="records no backbone for it .*--no_costs"):
        stored_model_spec("student", {"source": "pickle:features_x_train.pkl", "clip": None})


# ------------------------------------------------------------------------------------------------
# eval --baselines on a store whose backbones are outside the catalogue


def write_store(root: Path, models: dict[str, tuple[str, dict, int, int]], per_class: int = 3) -> None:
    """train/validation/test splits with 3 classes; models: name -> (source, clip, T, D). Each
    class shifts the features, so every probe has something to learn."""
    from polyspace_core.features.store import FeatureStoreWriter

    entries = [{"name": name, "role": "student" if i == 0 else "teacher", "source": source, "clip": clip,
                "tokens": "temporal", "T": t, "dim": d}
               for i, (name, (source, clip, t, d)) in enumerate(models.items())]
    for k, split in enumerate(("train", "validation", "test")):
        g = torch.Generator().manual_seed(k)
        labels = [i % 3 for i in range(3 * per_class)]
        feats = {name: torch.randn(len(labels), t, d, generator=g) + torch.tensor(labels)[:, None, None]
                 for name, (_, _, t, d) in models.items()}
        writer = FeatureStoreWriter(root / split, models=entries, dtype="float32", tokens="temporal",
                                    shard_size=100, paths=[f"{split}_{i}.mp4" for i in range(len(labels))],
                                    labels=labels, class_names=["a", "b", "c"])
        writer.write_shard(0, feats, ["ok"] * len(labels), len(labels), 0)
        writer.finalize()


@pytest.fixture
def outside_store(tmp_path, offline_hf_cache):
    """Student: a local timesformer-hr config folder; teacher: V-JEPA 2 ViT-g at 384 px by hub id,
    its config in the offline HF cache. Converters (ridge) and a one-epoch fusion head on it."""
    from polyspace_core.fusion.train import HeadOptions, TrainSettings, train_fusion

    student = config_folder(tmp_path, "timesformer-hr")
    offline_hf_cache.add(TEACHER_ID, config_folder(tmp_path, "vjepa2-vitg-384"))
    models = {"student": (str(student), {"frames": 16, "height": 448, "width": 448}, 16, 768),
              "teacher": (TEACHER_ID, {"frames": 16, "height": 384, "width": 384}, 8, 1408)}
    write_store(tmp_path / "features", models)
    assert main(["train-converter", "--features", str(tmp_path / "features"), "--save_dir",
                 str(tmp_path / "converters"), "--kind", "ridge", "--device", "cpu"]) == 0
    train_fusion(mode="cached", features=tmp_path / "features", converters=tmp_path / "converters",
                 settings=TrainSettings(epochs=1, batch=4), head=HeadOptions(rank=4, gate_hidden=8),
                 save_dir=tmp_path / "fusion", device="cpu", progress=False)
    return tmp_path


def eval_args(root: Path, *extra: str) -> list[str]:
    return ["eval", "--fusion", str(root / "fusion"), "--baselines", "--use_cached_features", "--root",
            str(root / "features"), "--device", "cpu", "--probe_epochs", "1", "--batch", "4", *extra]


def test_eval_baselines_reports_the_gflops_of_backbones_outside_the_catalogue(outside_store, capsys):
    root = outside_store
    assert main(eval_args(root, "--out", str(root / "table.json"))) == 0, capsys.readouterr().err
    m = json.loads((root / "table.json").read_text())["metrics"]
    expected = {"student": direct_count(root / "timesformer-hr", 16, 448) / 1e9,
                "teacher": direct_count(root / "vjepa2-vitg-384", 16, 384) / 1e9}
    # each row's cost includes its backbones: the student rows the student's, the teacher row the teacher's
    assert expected["student"] < m["gflops_student"] < expected["student"] * 1.001
    assert expected["teacher"] < m["gflops_teacher_teacher"] < expected["teacher"] * 1.001
    assert m["gflops_fusion_oracle"] > expected["student"] + expected["teacher"]


def test_eval_stops_before_any_baseline_when_a_config_cannot_be_read(outside_store, offline_hf_cache, capsys,
                                                                      monkeypatch):
    import polyspace_core.fusion.evaluate as evaluate

    root = outside_store
    shutil.rmtree(offline_hf_cache.root)  # the teacher's config is no longer in the cache
    trained = []
    real_probe = evaluate.train_linear_probe
    monkeypatch.setattr(evaluate, "train_linear_probe", lambda *a, **k: trained.append(1) or real_probe(*a, **k))
    assert main(eval_args(root)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'{TEACHER_ID}'" in err and "HF_HUB_OFFLINE" in err
    assert not trained and not (root / "tensorboard").exists()
    # --no_costs: the same table without GFLOPs
    assert main(eval_args(root, "--no_costs", "--out", str(root / "no_costs.json"))) == 0
    rows = json.loads((root / "no_costs.json").read_text())["rows"]
    assert trained and rows and all(row["gflops"] is None for row in rows)
