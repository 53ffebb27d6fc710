"""Every command of seeds 000, 001 and 003 runs as written, paths aside (issue 17).

The commands are copied below exactly as the seeds print them (a test checks they are the seeds'
own when ../shared/seeds is there). `python -m polyspace.<module>` becomes the `polyspace`
subcommand of that script; absolute dataset paths (/path/to/UCF101, /data/UCF101) point at a
generated set and the template placeholders (<your_dataset>, <path>, ...) are filled; every other
word is kept, relative paths included: each flow runs in its own working folder.

The models are the seeds' names (vjepa2, videomae, timesformer, vivit): the registry keys, loaded
from their default hub ids out of an offline HF cache that holds one-layer models of the width the
seeds' `--d_in 768 --d_out 768` state. The datasets list the classes the seeds' `--classes 101` /
`--classes 51` state (UCF101's classInd.txt, HMDB51's split files) with generated clips for three
of them.

What the seeds leave out and our pipeline needs is added as a marked prerequisite: the validation
(and test) split each stage selects (reports) on, featurized with the seed's own command plus
`--split`, and a converter set where a seed uses one it never trains.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from polyspace_core.cli import main
from polyspace_core.features.store import FeatureStore

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

# the seeds' complete commands, in the order each seed prints them
SEED_COMMANDS: dict[str, list[str]] = {
    "000": [
        """python -m polyspace.train.train_fusion \\
    --dataset ucf101 \\
    --root /path/to/UCF101 \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --converters ./checkpoints/converters.pt \\
    --classes 101""",
        """python -m polyspace.data.featurize \\
    --dataset ucf101 \\
    --root /path/to/UCF101 \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --out ./features \\
    --shard_size 1000""",
        """python -m polyspace.train.train_fusion \\
    --dataset ucf101 \\
    --root ./features \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --converters ./checkpoints/converters.pt \\
    --classes 101 \\
    --use_cached_features""",
        """python -m polyspace.data.featurize \\
       --dataset <your_dataset> \\
       --root <video_path> \\
       --student <student_model> \\
       --teachers <teacher1> <teacher2> ... \\
       --out ./features \\
       --shard_size 1000 \\
       --fp16""",
    ],
    "001": [
        """python -m polyspace.data.featurize \\
    --dataset ucf101 \\
    --root /path/to/UCF101 \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --out ./features \\
    --shard_size 1000 \\
    --fp16  # Enable FP16 storage""",
        """python -m polyspace.train.train_fusion \\
    --dataset ucf101 \\
    --root ./features \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --converters ./checkpoints/converters.pt \\
    --classes 101 \\
    --use_cached_features \\
    --features_fp16  # Tell the training script features are in FP16""",
        """python -m polyspace.train.eval_downstream \\
    --dataset ucf101 \\
    --root ./features \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --converters ./checkpoints/converters.pt \\
    --fusion ./checkpoints/fusion/fusion_ep5.pt \\
    --use_cached_features \\
    --features_fp16""",
        """python -m polyspace.train.eval_downstream \\
    --dataset ucf101 \\
    --root ./features \\
    --student vjepa2 \\
    --student_only \\
    --classes 101 \\
    --use_cached_features \\
    --features_fp16""",
        """python -m polyspace.data.featurize \\
    --dataset <name> \\
    --root <path> \\
    --fp16 \\
    --shard_size 500  # Also reduce shard size""",
        """python -m polyspace.data.featurize \\
    --dataset ucf101 \\
    --root /data/UCF101 \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --out ./features \\
    --fp16 \\
    --shard_size 1000""",
        """python -m polyspace.train.train_fusion \\
    --dataset ucf101 \\
    --root ./features \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --converters ./ckpt/converters.pt \\
    --classes 101 \\
    --use_cached_features \\
    --features_fp16 \\
    --epochs 20""",
        """python -m polyspace.train.eval_downstream \\
    --dataset ucf101 \\
    --root ./features \\
    --student vjepa2 \\
    --teachers videomae timesformer \\
    --converters ./ckpt/converters.pt \\
    --fusion ./checkpoints/fusion/fusion_ep20.pt \\
    --split test \\
    --use_cached_features \\
    --features_fp16""",
    ],
    "003": [
        "python -m polyspace.data.featurize --dataset hmdb51 --root ./datasets/hmdb51 --split train --out ./features "
        "--student vjepa2 --teachers videomae timesformer vivit --batch 2 --workers 2 --frames 16",
        "python -m polyspace.train.train_converter --features ./features/features_hmdb51_train.json --teachers "
        "videomae timesformer vivit --d_in 768 --d_out 768 --epochs 10 --batch 128 --lr 1e-3 --save_dir "
        "./checkpoints/converters",
        "python -m polyspace.train.train_fusion --dataset hmdb51 --root ./datasets/hmdb51 --split train --student "
        "vjepa2 --teachers videomae timesformer vivit --converters ./checkpoints/converters/converters_ep10.pt "
        "--classes 51 --frames 16 --batch 4 --epochs 5 --lr 3e-4 --save_dir ./checkpoints/fusion",
        "python -m polyspace.train.eval_downstream --dataset hmdb51 --root ./datasets/hmdb51 --split validation "
        "--student vjepa2 --teachers videomae timesformer vivit --converters "
        "./checkpoints/converters/converters_ep10.pt --fusion ./checkpoints/fusion/fusion_ep5.pt --frames 16 "
        "--batch 4",
    ],
}
# seed 001's "Best Practices" lines: flags to add to a command ("..." is the rest of it), not
# commands; their flags are in the complete commands above
FRAGMENTS = {"001": ["python -m polyspace.data.featurize --fp16 ...",
                     "python -m polyspace.train.train_fusion --use_cached_features --features_fp16 ...",
                     "python -m polyspace.train.eval_downstream --use_cached_features --features_fp16 ..."]}

SUBCOMMANDS = {"polyspace.data.featurize": "featurize", "polyspace.train.train_converter": "train-converter",
               "polyspace.train.train_fusion": "train-fusion", "polyspace.train.eval_downstream": "eval"}
# one layer at the width the seeds state (--d_in 768 --d_out 768); 32 px clips in 16 px patches
WIDE = dict(hidden_size=768, num_attention_heads=12, num_hidden_layers=1)
SMALL = {"vjepa2": dict(mlp_ratio=1.0, patch_size=16), "videomae": dict(intermediate_size=768, patch_size=16),
         "timesformer": dict(intermediate_size=768, patch_size=16),
         "vivit": dict(intermediate_size=768, tubelet_size=[2, 16, 16])}


def argv(text: str, swaps: dict[str, str]) -> list[str]:
    """A seed command as `polyspace` arguments: the module becomes its subcommand, `# ...`
    comments go, words in `swaps` are replaced (paths and placeholders; None removes one)."""
    words = shlex.split(text.replace("\\\n", " "), comments=True)
    assert words[:2] == ["python", "-m"] and words[2] in SUBCOMMANDS, words
    return [SUBCOMMANDS[words[2]], *[swaps.get(w, w) for w in words[3:] if swaps.get(w, w) is not None]]


def seed_commands_in(text: str) -> list[str]:
    """The polyspace commands of a seed's ```bash blocks, each on one line."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("python -m polyspace."):
                found.append(line.strip())
    return found


def test_the_commands_here_are_the_seeds_own():
    if not SEEDS.is_dir():
        pytest.skip(f"{SEEDS}: the seed documents are not beside this checkout")
    for seed, commands in SEED_COMMANDS.items():
        (path,) = SEEDS.glob(f"{seed}_*.txt")
        found = [" ".join(c.replace("\\\n", " ").split()) for c in seed_commands_in(path.read_text())]
        ours = [" ".join(c.replace("\\\n", " ").split()) for c in commands + FRAGMENTS.get(seed, [])]
        assert sorted(found) == sorted(ours), path


# ------------------------------------------------------------------------------------------------
# the models, the datasets, and a folder per flow


@pytest.fixture(scope="module")
def hub(module_offline_hf_cache, tmp_path_factory, save_models_at_hub_ids):
    """vjepa2, videomae, timesformer, vivit at their default hub ids in the offline HF cache."""
    changes = {key: {**WIDE, **SMALL[key]} for key in SMALL}
    save_models_at_hub_ids(module_offline_hf_cache, tmp_path_factory.mktemp("models"), changes)
    return module_offline_hf_cache


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """UCF101 and HMDB51 in their official layouts: generated clips of three classes, and the
    class lists padded to the 101 and 51 classes the seeds' --classes state."""
    from polyspace_core.datasets import generate_synthmotion

    root = tmp_path_factory.mktemp("datasets")
    ucf, hmdb = root / "UCF101", root / "hmdb51"
    # the fewest clips that give every split clips (UCF101's validation holds out whole groups)
    for out, layout, clips in ((ucf, "ucf101", 5), (hmdb, "hmdb51", 4)):
        generate_synthmotion(out, layout=layout, classes=3, clips_per_class=clips, frames=16, size=32, seed=0,
                             progress=False)
    class_ind = ucf / "ucfTrainTestlist" / "classInd.txt"
    listed = class_ind.read_text().split()[1::2]
    class_ind.write_text("".join(f"{i} {name}\n" for i, name in
                                 enumerate(listed + [f"Unrecorded{k:03d}" for k in range(101 - len(listed))], 1)))
    split_dir = hmdb / "testTrainMulti_7030_splits"
    recorded = {p.name.split("_test_split")[0] for p in split_dir.iterdir()}
    for k in range(51 - len(recorded)):
        for split_id in (1, 2, 3):
            (split_dir / f"unrecorded{k:02d}_test_split{split_id}.txt").write_text("")
    return {"ucf": ucf, "hmdb": hmdb}


class Flow:
    """A working folder where seed commands run in order, as a user would run them there."""

    def __init__(self, folder: Path, swaps: dict[str, str], monkeypatch, capsys):
        self.folder, self.swaps, self.monkeypatch, self.capsys = folder, swaps, monkeypatch, capsys
        folder.mkdir(parents=True, exist_ok=True)

    def run(self, text: str, *extra: str, rc: int = 0) -> str:
        """Run a command here; its stdout (or, when it must fail, its one stderr line)."""
        self.monkeypatch.chdir(self.folder)
        self.capsys.readouterr()
        code = main([*argv(text, self.swaps), *extra])
        out = self.capsys.readouterr()
        assert code == rc, out.err
        if rc:
            assert out.err.count("\n") == 1, out.err
            return out.err
        return out.out

    def path(self, relative: str) -> Path:
        return self.folder / relative


@pytest.fixture
def flow(tmp_path, datasets, hub, monkeypatch, capsys):
    swaps = {"/path/to/UCF101": str(datasets["ucf"]), "/data/UCF101": str(datasets["ucf"]),
             "<your_dataset>": "ucf101", "<video_path>": str(datasets["ucf"]), "<student_model>": "vjepa2",
             "<teacher1>": "videomae", "<teacher2>": "timesformer", "...": None,
             "<name>": "ucf101", "<path>": str(datasets["ucf"])}
    return Flow(tmp_path / "work", swaps, monkeypatch, capsys)


@pytest.fixture(scope="module")
def ucf_fp16(tmp_path_factory, datasets, hub):
    """Seed 001's featurize in a folder of its own, with the validation and test splits its later
    commands select and report on (prerequisite: the same command with --split), and a converter
    set trained on it (prerequisite: seeds 000/001 use ./checkpoints/converters.pt but never make it)."""
    folder = tmp_path_factory.mktemp("ucf_fp16")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        command = argv(SEED_COMMANDS["001"][0], {"/path/to/UCF101": str(datasets["ucf"])})
        for extra in ([], ["--split", "validation"], ["--split", "test"]):
            assert main([*command, *extra]) == 0
        assert main(["train-converter", "--features", "./features", "--kind", "ridge", "--device", "cpu"]) == 0
    return folder


def copy_converters(ucf_fp16: Path, to: Path) -> None:
    shutil.copytree(ucf_fp16 / "checkpoints" / "converters", to)


def copy_splits(ucf_fp16: Path, to: Path, *splits: str) -> None:
    for split in splits:
        shutil.copytree(ucf_fp16 / "features" / split, to / split)


def fusion_record(folder: Path) -> dict:
    return json.loads((folder / "best" / "fusion.json").read_text())


# ------------------------------------------------------------------------------------------------
# seed 000


def test_seed_000_video_mode(flow, ucf_fp16):
    copy_converters(ucf_fp16, flow.path("checkpoints/converters"))  # prerequisite
    out = flow.run(SEED_COMMANDS["000"][0], "--device", "cpu")
    assert "the converter set in checkpoints/converters" in out and "video mode" in out
    record = fusion_record(flow.path("checkpoints/fusion"))  # the original's default --save_dir
    assert record["mode"] == "video" and len(record["class_names"]) == 101
    assert record["config"]["student"] == "vjepa2" and record["config"]["teachers"] == ["videomae", "timesformer"]
    assert record["data"]["student_source"] == "facebook/vjepa2-vitl-fpc64-256"  # the registry key's hub id


def test_seed_000_cached_mode(flow, ucf_fp16):
    featurize, train = SEED_COMMANDS["000"][1], SEED_COMMANDS["000"][2]
    out = flow.run(featurize, "--device", "cpu")
    store = FeatureStore.open(flow.path("features/train"))
    assert store.models == ["vjepa2", "videomae", "timesformer"] and store.dtype == torch.float32
    assert len(store.class_names) == 101 and store.ok.all() and "features/train" in out
    flow.run(featurize, "--split", "validation", "--device", "cpu")  # prerequisite: the selection split
    copy_converters(ucf_fp16, flow.path("checkpoints/converters"))  # prerequisite
    out = flow.run(train, "--device", "cpu")
    assert "cached mode" in out
    history = json.loads(flow.path("checkpoints/fusion/history.json").read_text())
    assert history["complete"] and len(history["epochs"]) == 5  # the original's default --epochs


def test_seed_000_migration_template(flow):
    flow.run(SEED_COMMANDS["000"][3], "--device", "cpu")
    store = FeatureStore.open(flow.path("features/train"))
    assert store.models == ["vjepa2", "videomae", "timesformer"] and store.dtype == torch.float16


# ------------------------------------------------------------------------------------------------
# seed 001


def test_seed_001_featurize_fp16(ucf_fp16):
    for split in ("train", "validation", "test"):
        store = FeatureStore.open(ucf_fp16 / "features" / split)
        assert store.dtype == torch.float16 and store.models == ["vjepa2", "videomae", "timesformer"]
        assert store.shape("vjepa2") == (8, 768) and store.ok.all()


def test_seed_001_train_and_evaluate_on_fp16_features(flow, ucf_fp16):
    train, evaluate, student_only = SEED_COMMANDS["001"][1:4]
    copy_splits(ucf_fp16, flow.path("features"), "train", "validation", "test")  # seed 001's featurize, above
    copy_converters(ucf_fp16, flow.path("checkpoints/converters"))  # prerequisite
    flow.run(train, "--device", "cpu")
    out = flow.run(evaluate, "--device", "cpu")
    assert "the run in checkpoints/fusion (5 epochs); its checkpoint best/" in out
    assert re.search(r"fusion on test \(cached mode\): top-1 [0-9.]+", out)
    out = flow.run(student_only, "--device", "cpu", "--probe_epochs", "2")
    assert re.search(r"student-only linear probe on test \(cached mode\): top-1 [0-9.]+", out)

    # what the flags say is checked against the checkpoint and the data: one line each
    other = ["--device", "cpu"]
    assert "fuses videomae timesformer" in flow.run(evaluate.replace("timesformer \\", "vivit \\"), *other, rc=2)
    assert "--classes 51" in flow.run(student_only.replace("--classes 101", "--classes 51"), *other, rc=2)
    assert "after epoch 9" in flow.run(evaluate.replace("fusion_ep5", "fusion_ep9"), *other, rc=2)
    shutil.copytree(flow.path("checkpoints/converters"), flow.path("other_converters"))
    assert flow.run(evaluate.replace("./checkpoints/converters.pt", "./other_converters"), *other)  # a copy
    assert main(["train-converter", "--features", str(flow.path("features")), "--kind", "mlp", "--epochs", "1",
                 "--save_dir", str(flow.path("retrained")), "--device", "cpu"]) == 0
    assert "holds others" in flow.run(evaluate.replace("./checkpoints/converters.pt", "./retrained"), *other, rc=2)
    Path(flow.path("checkpoints/converters.pt")).write_bytes(b"an original torch checkpoint")
    assert "a file; ours are folders" in flow.run(evaluate, *other, rc=2)


def test_seed_001_troubleshooting_uses_the_original_defaults(flow):
    flow.run(SEED_COMMANDS["001"][4], "--device", "cpu")
    store = FeatureStore.open(flow.path("features/train"))  # --out ./features, the default
    assert store.models == ["vjepa2", "videomae", "timesformer", "vivit"] and store.dtype == torch.float16
    assert store.manifest["shard_size"] == 500


def test_seed_001_example_workflow(flow, ucf_fp16):
    featurize, train, evaluate = SEED_COMMANDS["001"][5:8]
    flow.run(featurize, "--device", "cpu")
    assert FeatureStore.open(flow.path("features/train")).dtype == torch.float16
    copy_splits(ucf_fp16, flow.path("features"), "validation", "test")  # prerequisite: the same with --split
    copy_converters(ucf_fp16, flow.path("ckpt"))  # prerequisite: ./ckpt/converters.pt names the set in ./ckpt
    out = flow.run(train, "--device", "cpu")
    assert "--converters ./ckpt/converters.pt: the converter set in ckpt" in out
    out = flow.run(evaluate, "--device", "cpu")
    assert "(20 epochs)" in out and "fusion on test (cached mode)" in out


# ------------------------------------------------------------------------------------------------
# seed 003


def test_seed_003_quickstart(flow, datasets):
    featurize, train_converter, train_fusion, evaluate = SEED_COMMANDS["003"]
    flow.path("datasets").mkdir()
    flow.path("datasets/hmdb51").symlink_to(datasets["hmdb"])  # ./datasets/hmdb51 as the seed has it
    flow.run(featurize, "--device", "cpu")
    flow.run(featurize.replace("--split train", "--split validation"), "--device", "cpu")  # prerequisite
    store = FeatureStore.open(flow.path("features/train"))
    assert store.models == ["vjepa2", "videomae", "timesformer", "vivit"] and len(store.class_names) == 51

    out = flow.run(train_converter, "--device", "cpu")
    index = json.loads(flow.path("checkpoints/converters/converters.json").read_text())
    assert index["student"] == "vjepa2" and list(index["teachers"]) == ["videomae", "timesformer", "vivit"]
    assert out.count("best epoch") == 3

    out = flow.run(train_fusion, "--device", "cpu")
    assert "trained 10 epochs; each teacher's epoch selected on validation" in out and "video mode" in out
    record = fusion_record(flow.path("checkpoints/fusion"))
    assert record["mode"] == "video" and record["settings"]["epochs"] == 5 and record["settings"]["batch"] == 4

    out = flow.run(evaluate, "--device", "cpu")
    assert re.search(r"fusion on validation \(video mode\): top-1 [0-9.]+", out)
    # another epoch than the runs were trained for, another frame count: one line each
    assert "trained for other epochs (videomae: 10" in flow.run(evaluate.replace("_ep10", "_ep7"), rc=2)
    assert "--frames 32" in flow.run(evaluate.replace("--frames 16", "--frames 32"), rc=2)
    other = train_converter.replace("features_hmdb51_train", "features_ucf101_train")
    assert "holds hmdb51 features" in flow.run(other, rc=2)
