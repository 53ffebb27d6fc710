"""Shared test setup: the project root and a quieter, deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def smoke_report():
    """The smoke report, run once per test session (papermill, as `make report PRESET=smoke`).
    The notebook tests check it; the browser tests read its HTML and reuse its outputs."""
    from polyspace_core.report import StageResult, run_report

    if os.environ.get("POLYSPACE_REUSE_SMOKE_REPORT") == "1":
        # developer opt-in while iterating on the browser tests: reuse reports/smoke as it is
        import json
        index = json.loads((ROOT / "reports" / "smoke" / "index.json").read_text())
        return [StageResult(**s) for s in index["stages"]]
    return run_report("smoke", root=ROOT)


# the sweep the issue names, on the smoke report's upstream outputs
SMOKE_SWEEP = ["sweep", "--nb", "04", "-p", "fusion_lr", "1e-3,3e-4", "--preset", "smoke"]


@pytest.fixture(scope="session")
def smoke_sweep(smoke_report):
    """`polyspace sweep --nb 04 -p fusion_lr 1e-3,3e-4 --preset smoke`, run once per session
    (with --overwrite, so a sweep an earlier session left is replaced) and at once a second time
    (the resume: it must skip both points). Right after each other, so no other test's rerun of
    an upstream notebook comes between them. Returns both runs and sweep.json after each."""
    import json
    import subprocess
    import sys

    def upstream_times() -> dict[str, str]:
        # when the smoke report last ran 01 and 02 (later notebook tests run them again)
        return {stage: json.loads((ROOT / "reports" / "smoke" / stage / "metrics.json").read_text())
                ["provenance"]["time"] for stage in ("01_featurize", "02_train_converters")}

    folder = ROOT / "reports" / "smoke" / "sweeps" / "04-fusion_lr"
    command = [sys.executable, "-m", "polyspace_core.cli", *SMOKE_SWEEP]
    upstream_before = upstream_times()
    first = subprocess.run([*command, "--overwrite"], cwd=ROOT, capture_output=True, text=True)
    after_first = json.loads((folder / "sweep.json").read_text()) if (folder / "sweep.json").is_file() else None
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    after_second = json.loads((folder / "sweep.json").read_text()) if (folder / "sweep.json").is_file() else None
    return {"folder": folder, "first": first, "second": second, "sweep": after_first, "resumed": after_second,
            "upstream_before": upstream_before, "upstream_after": upstream_times()}


class OfflineHFCache:
    """An HF hub cache in a temp folder, read offline: what HF_HUB_CACHE=<root> HF_HUB_OFFLINE=1
    give a process (set on huggingface_hub's constants, which the library reads at each call,
    because the environment is only read when it is imported). `add` lays a folder out as the hub
    cache does for a repo id (refs/main -> snapshots/<revision>/), as a download would."""

    def __init__(self, root: Path):
        self.root = root

    def add(self, repo_id: str, folder: Path) -> str:
        import shutil

        repo = self.root / ("models--" + repo_id.replace("/", "--"))
        revision = "0" * 40
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        shutil.copytree(folder, repo / "snapshots" / revision)
        return repo_id


def _offline_hf_cache(root: Path, patch) -> OfflineHFCache:
    import huggingface_hub.constants as hub

    root.mkdir(parents=True, exist_ok=True)
    patch.setattr(hub, "HF_HUB_CACHE", str(root))
    patch.setattr(hub, "HF_HUB_OFFLINE", True)
    return OfflineHFCache(root)


@pytest.fixture
def offline_hf_cache(tmp_path, monkeypatch) -> OfflineHFCache:
    """An empty offline HF cache for one test."""
    return _offline_hf_cache(tmp_path / "hf_cache", monkeypatch)


@pytest.fixture(scope="module")
def module_offline_hf_cache(tmp_path_factory):
    """An empty offline HF cache shared by the tests of one module."""
    with pytest.MonkeyPatch.context() as patch:
        yield _offline_hf_cache(tmp_path_factory.mktemp("hf_cache"), patch)


def _save_models_at_hub_ids(cache: OfflineHFCache, folder: Path, changes: dict[str, dict] | None = None) -> None:
    """The four architectures (vjepa2, videomae, timesformer, vivit) at their registry's default
    hub ids in `cache`: each tiny preset's config updated with `changes[key]`, random weights from a
    fixed per-key seed, saved with save_pretrained (model and processor) under `folder`, as a
    download would have put them."""
    import zlib

    import torch

    from polyspace_core.backbones import ARCHS, TINY_PRESETS
    from polyspace_core.backbones.models import _transformers_class as cls

    for key, kwargs in TINY_PRESETS.values():
        arch = ARCHS[key]
        kwargs = {**kwargs, **(changes or {}).get(key, {})}
        config = cls(arch.config_class)(**kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(zlib.crc32(key.encode()))
            model = cls(arch.model_class)(config, **arch.load_kwargs)
        size = kwargs.get("image_size", kwargs.get("crop_size"))
        processor = (cls(arch.processor_class)(crop_size=size) if key == "vjepa2" else
                     cls(arch.processor_class)(size={"shortest_edge": size}, crop_size={"height": size, "width": size}))
        model.save_pretrained(folder / key)
        processor.save_pretrained(folder / key)
        cache.add(arch.hub_id, folder / key)


@pytest.fixture(scope="session")
def save_models_at_hub_ids():
    """_save_models_at_hub_ids(cache, folder, changes): models at the default hub ids in an offline cache."""
    return _save_models_at_hub_ids
