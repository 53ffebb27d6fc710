"""The seed's FusionSystem API (seed 004, "Fusion Training Guide"): its Python code runs as written.

The seed's code blocks are copied below exactly (a test checks them against the seed file when
../shared/seeds is there). Only the seed's own module names are swapped for ours (its
`fusion_system`, `FusionNet.fusion_unet.SimpleFusionNet`, `fusion_loss`); the paths stay as
written, relative to a working folder laid out as the seed's user has it: ../MemFlow (a
stand-in checkout with MemFlow's module names and call signatures, see test_colorize_flow.py),
../SwinSingle (the SwinTExCo checkout, which is only checked to exist),
checkpoints/memflow_best.pth (MemFlow's released key layout), checkpoints/swintexco_best/ (the
SwinTExCo release layout: embed_net.pth, nonlocal_net.pth, colornet.pth) and, for Strategy 2,
timm's swinv2_cr_tiny_ns_224 weights in an offline HF cache (the seed's "downloaded
automatically"; nothing is downloaded here). All weights are random: these tests check the API
and the strategies, not colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_colorize_flow import _fake_memflow, _released_memflow_state

from polyspace_core.colorize.lab import frames_to_lab
from polyspace_core.colorize.system import DEFAULT_SWIN_BACKBONE, FusionSystem
from polyspace_core.errors import PolySpaceError

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "004_87f2efad8032185b.txt"
ARROW = "\u201a\u00dc\u00ea"  # the seed's arrow as its file spells it (UTF-8 read as Mac Roman)

STRATEGY_1 = f"""from fusion_system import FusionSystem
from FusionNet.fusion_unet import SimpleFusionNet

system = FusionSystem(
    memflow_path='../MemFlow',
    swintexco_path='../SwinSingle',
    memflow_ckpt='checkpoints/memflow_best.pth',
    swintexco_ckpt='checkpoints/swintexco_best/',  # {ARROW} Pretrained weights
    fusion_net=SimpleFusionNet()
)
"""

STRATEGY_2 = f"""system = FusionSystem(
    memflow_path='../MemFlow',
    swintexco_path='../SwinSingle',
    memflow_ckpt='checkpoints/memflow_best.pth',
    swintexco_ckpt=None,  # {ARROW} No pretrained weights needed!
    fusion_net=SimpleFusionNet()
)
"""

OPTIMIZER = """import torch.optim as optim

# Option 1: Simple (same LR for all)
optimizer = optim.Adam(system.parameters(), lr=1e-4)

# Option 2: Different LRs for different components
param_groups = system.get_parameter_groups()
optimizer = optim.Adam([
    {'params': param_groups[0]['params'], 'lr': 1e-5, 'name': 'swintexco'},
    {'params': param_groups[1]['params'], 'lr': 1e-4, 'name': 'fusion'}
])
"""

TRAINING_LOOP = """from fusion_loss import FusionLoss

# Setup
criterion = FusionLoss()
optimizer = optim.Adam(system.parameters(), lr=1e-4)

# Training
for epoch in range(num_epochs):
    for batch in dataloader:
        # Get data
        frames_lab = batch['frames_lab']  # List of LAB tensors
        frames_pil = batch['frames_pil']  # List of PIL images
        references_pil = batch['references_pil']

        # Forward pass
        system.reset_memory()  # Reset at start of sequence
        outputs, memflow_outputs, memflow_confs = system.forward_sequence(
            frames_lab,
            frames_pil,
            references_pil,
            return_memflow=True
        )

        # Compute loss
        loss = criterion(outputs, frames_lab, memflow_outputs)

        # Backward
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
"""

QUICK_START = """# 1. Make sure you have MemFlow checkpoint
ls checkpoints/memflow_best.pth

# 2. Run training (without SwinTExCo pretrained weights)
python train/train.py \\
    --memflow_path MemFlow \\
    --swintexco_path SwinSingle \\
    --memflow_ckpt MemFlow/ckpt/memflow_colorization.pth \\
    --dataset /path/to/dataset \\
    --imagenet /path/to/imagenet \\
    --batch_size 2 \\
    --epochs 50
"""

# the seed's module names -> ours (the only change made to its code)
IMPORTS = {
    "from fusion_system import FusionSystem": "from polyspace_core.colorize.system import FusionSystem",
    "from FusionNet.fusion_unet import SimpleFusionNet":
        "from polyspace_core.colorize.fusion_unet import FusionUNet as SimpleFusionNet",
    "from fusion_loss import FusionLoss": "from polyspace_core.colorize.loss import FusionLoss",
}


def ours(code: str) -> str:
    for theirs, mine in IMPORTS.items():
        code = code.replace(theirs, mine)
    return code


def test_the_blocks_are_the_seeds_own():
    if not SEED.is_file():
        pytest.skip(f"{SEED} is not here; the blocks above are copies of it")
    text = SEED.read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0].lstrip("\n") for b in text.split("```python")[1:]]
    assert blocks == [STRATEGY_1, STRATEGY_2, OPTIMIZER, TRAINING_LOOP]
    assert [b.split("```", 1)[0].lstrip("\n") for b in text.split("```bash")[1:]] == [QUICK_START]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The seed user's working folder (see the module docstring), with random weights."""
    from polyspace_core.colorize.released import save_released
    from polyspace_core.colorize.swintexco import build_swintexco_branch

    root = tmp_path_factory.mktemp("seed_user")
    _fake_memflow(root)                                  # root/MemFlow
    (root / "SwinSingle").mkdir()
    work = root / "work"
    (work / "checkpoints").mkdir(parents=True)
    torch.save({"model": {f"module.{k}": v for k, v in _released_memflow_state().items()}},
               work / "checkpoints" / "memflow_best.pth")
    torch.manual_seed(0)
    save_released(build_swintexco_branch(), work / "checkpoints" / "swintexco_best")
    return work


@pytest.fixture
def timm_cache(tmp_path, offline_hf_cache):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = timm.create_model("swinv2_cr_tiny_ns_224", pretrained=False)
    (tmp_path / "timm").mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "timm" / "model.safetensors")
    offline_hf_cache.add(DEFAULT_SWIN_BACKBONE, tmp_path / "timm")
    return model


def _batch(t: int = 2, size: int = 32) -> dict:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(t)]
    return {"frames_lab": [frames_to_lab(f)[None] for f in frames],       # T tensors (1, 3, H, W)
            "frames_pil": [Image.fromarray(f) for f in frames],           # T PIL images
            "references_pil": Image.fromarray(frames[0]).resize((48, 40))}  # any size


def test_strategy_1_with_the_released_swintexco(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    scope: dict = {}
    exec(ours(STRATEGY_1), scope)
    system = scope["system"]
    assert system.exemplar.pretrained and system.exemplar.config.released_from == "checkpoints/swintexco_best"
    assert system.propagator.backend.name == "memflow" and system.swintexco_path == "../SwinSingle"
    # the seed's table: embed frozen, non-local fine-tuned at 1e-5, colour net frozen, fusion 1e-4
    groups = system.get_parameter_groups()
    assert [g["lr"] for g in groups] == [1e-5, 1e-4]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in system.exemplar.nonlocal_net.parameters()}
    assert not any(p.requires_grad for p in system.exemplar.colornet.parameters())
    assert not any(p.requires_grad for p in system.exemplar.embed.parameters())
    weights = system.describe_weights()
    assert weights["summary"].startswith("pretrained: SwinTExCo release")
    assert weights["flow"].startswith("pretrained: memflow")
    exec(OPTIMIZER, scope)
    assert [g["lr"] for g in scope["optimizer"].param_groups] == [1e-5, 1e-4]


def test_strategy_2_and_the_training_loop(workdir, monkeypatch, timm_cache):
    monkeypatch.chdir(workdir)
    scope: dict = {"num_epochs": 1, "dataloader": [_batch()]}
    exec(ours(STRATEGY_1.split("\n\n")[0]) + "\n\n" + ours(STRATEGY_2), scope)
    system = scope["system"]
    branch = system.exemplar
    assert not branch.pretrained
    torch.testing.assert_close(branch.embed.backbone.state_dict()["stages_3.blocks.1.mlp.fc2.weight"],
                               timm_cache.state_dict()["stages.3.blocks.1.mlp.fc2.weight"])
    assert [g["lr"] for g in system.get_parameter_groups()] == [1e-4, 1e-4]   # from scratch
    assert not any(p.requires_grad for p in branch.colornet.parameters())    # random, frozen (the seed)
    assert system.describe_weights()["embedding"] == f"pretrained: swinv2_cr_tiny_ns_224 {DEFAULT_SWIN_BACKBONE}"
    before = [p.detach().clone() for p in branch.nonlocal_net.parameters()]
    frozen = [p.detach().clone() for p in branch.colornet.parameters()]
    exec(OPTIMIZER + ours(TRAINING_LOOP), scope)
    assert scope["outputs"].shape == (1, 2, 2, 32, 40) and scope["memflow_confs"].shape == (1, 2, 1, 32, 40)
    assert torch.isfinite(scope["loss"])
    assert any(not torch.equal(a, p) for a, p in zip(before, branch.nonlocal_net.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(frozen, branch.colornet.parameters()))
    # MemFlow's memory was read across the sequence (frame 1 from frame 0) and reset_memory clears it
    assert system.propagator.backend._streams
    system.reset_memory()
    assert not system.propagator.backend._streams and branch._last_lab is None


def test_seed_constructor_errors_are_one_line(workdir, monkeypatch, offline_hf_cache):
    monkeypatch.chdir(workdir)
    cases = [
        (dict(swintexco_ckpt=None, swintexco_path="../SwinSingle"), "not in the local HF cache"),
        (dict(swintexco_ckpt="checkpoints/memflow_best.pth"), "neither SwinTExCo's release"),
        (dict(swintexco_ckpt="checkpoints/swintexco_best/", swintexco_path="../Nowhere"), "not a folder"),
        (dict(swintexco_ckpt="checkpoints/swintexco_best/", memflow_path="../MemFlow"), "MemFlow checkpoint"),
        (dict(), "give exemplar="),
    ]
    for kwargs, expected in cases:
        with pytest.raises(PolySpaceError) as error:
            FusionSystem(**kwargs)
        assert "\n" not in str(error.value) and expected in str(error.value), (kwargs, str(error.value))


def test_pil_inputs_and_automatic_reset_with_the_demo_model():
    from polyspace_core.colorize.exemplar import build_exemplar_branch

    torch.manual_seed(0)
    system = FusionSystem(build_exemplar_branch()).eval()
    assert system.describe_weights()["summary"] == "random"
    batch = _batch(t=3)
    with torch.no_grad():
        pil = system.forward_sequence(batch["frames_lab"], batch["frames_pil"], batch["references_pil"])
        arrays = system.forward_sequence(
            torch.stack(batch["frames_lab"], 1),
            np.stack([np.array(f) for f in batch["frames_pil"]])[None],
            np.array(batch["references_pil"].resize((40, 32), Image.BILINEAR))[None], reset=True)
        # same reference: the memory carries over (a chunk of the same video) ...
        again = system.forward_sequence(batch["frames_lab"], batch["frames_pil"], batch["references_pil"])
        # ... a new reference starts a new sequence by itself; reset=True says so outright
        other = Image.fromarray(np.full((32, 40, 3), 200, np.uint8))
        system.forward_sequence(batch["frames_lab"], batch["frames_pil"], other)
        fresh = system.forward_sequence(batch["frames_lab"], batch["frames_pil"], batch["references_pil"])
        forced = system.forward_sequence(batch["frames_lab"], batch["frames_pil"], batch["references_pil"], reset=True)
    torch.testing.assert_close(pil, arrays)
    assert not torch.equal(again, pil)
    torch.testing.assert_close(fresh, pil)
    torch.testing.assert_close(forced, pil)
    with pytest.raises(PolySpaceError, match="expected a list of 3 frames"):
        system.forward_sequence(batch["frames_lab"], batch["frames_pil"][:2], batch["references_pil"])


def _write_imagenet(root: Path) -> Path:
    """An ImageFolder tree in ImageNet's train layout: two classes of two photos each."""
    import cv2
    from skimage import data

    photos = {"n02123045": [data.chelsea(), data.cat()], "n07920052": [data.coffee(), data.coffee()[::-1]]}
    for wnid, images in photos.items():
        (root / "train" / wnid).mkdir(parents=True)
        for k, image in enumerate(images):
            cv2.imwrite(str(root / "train" / wnid / f"{wnid}_{k}.JPEG"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


def test_quick_start_trains_from_the_command_line(workdir, monkeypatch, timm_cache, capsys):
    """Seed 004's Quick Start as `polyspace train-color`, run where the seed's user runs it (the
    folder holding MemFlow/ and SwinSingle/). Paths aside: /path/to/dataset is a generated DAVIS
    tree of two videos (one held out for validation), /path/to/imagenet an ImageFolder tree of
    two classes. Prerequisite: MemFlow/ckpt/memflow_colorization.pth, the MemFlow checkpoint the
    command names (MemFlow's released layout, random weights). Appended flags: tiny sizes (32 px
    clips of 2 frames, SwinTExCo at 64 px) on the CPU, and --epochs 1: SwinTExCo's networks are
    full size (its colour net alone is ~1 s a frame on 2 CPU cores), so one epoch of one step
    takes ~10 s and the seed's 50 would take minutes."""
    import shlex
    import shutil

    from test_colorize_study import _write_davis

    from polyspace_core.cli import main
    from polyspace_core.colorize.swintexco import build_swintexco_branch
    from polyspace_core.colorize.train_config import DEFAULT_SWIN_BACKBONE as FLAG_DEFAULT
    from polyspace_core.io import read_json

    assert FLAG_DEFAULT == DEFAULT_SWIN_BACKBONE  # the torch-free flag default is the system's

    root = workdir.parent
    (root / "MemFlow" / "ckpt").mkdir(exist_ok=True)
    shutil.copy(workdir / "checkpoints" / "memflow_best.pth", root / "MemFlow" / "ckpt" / "memflow_colorization.pth")
    davis = root / "davis"
    if not davis.is_dir():
        _write_davis(davis, sequences=("bear", "car-turn"), frames=2)
    imagenet = _write_imagenet(root / "imagenet") if not (root / "imagenet").is_dir() else root / "imagenet"
    command = QUICK_START.split("\n\n")[1].split("\n", 1)[1]
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:2] == ["python", "train/train.py"]
    swaps = {"/path/to/dataset": str(davis), "/path/to/imagenet": str(imagenet)}
    args = ["train-color", *[swaps.get(w, w) for w in words[2:]],
            "--device", "cpu", "--size", "32", "--frames", "2", "--image_size", "64", "--epochs", "1"]
    monkeypatch.chdir(root)
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "2 training clips (1 from video, 1 from ImageNet), 1 validation clips" in out
    assert "exemplar lr 0.0001, fusion lr 0.0001" in out   # the seed's table, Strategy 2
    run = root / "checkpoints" / "colorization"
    settings = read_json(run / "settings.json")
    assert settings["validation"] == ["bear@0"] and settings["train"][0] == "car-turn@0"
    assert settings["imagenet"]["classes"] == 2 and settings["imagenet"]["clips"] == 1
    assert len(read_json(run / "history.json")["epochs"]) == 1
    system = FusionSystem.from_pretrained(run / "checkpoint")
    assert system.trained_size == 32 and system.exemplar.config.image_size == 64
    # the seed's Strategy 2: the embedding (timm's weights) and the random colour net frozen,
    # the non-local net trained; rebuilt from the same seed to see what moved
    torch.manual_seed(0)
    start = build_swintexco_branch(DEFAULT_SWIN_BACKBONE, image_size=64)
    trained = system.exemplar.state_dict()
    for key, value in start.state_dict().items():
        if not key.startswith("nonlocal_net."):
            assert torch.equal(value, trained[key]), key
    assert any(not torch.equal(v, trained[k]) for k, v in start.state_dict().items() if k.startswith("nonlocal_net."))
    torch.testing.assert_close(trained["embed.backbone.stages_3.blocks.1.mlp.fc2.weight"],
                               timm_cache.state_dict()["stages.3.blocks.1.mlp.fc2.weight"])
    # the same command again: the run is there with these settings
    assert main(args) == 0 and "already trained" in capsys.readouterr().out
