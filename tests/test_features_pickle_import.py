"""import-pickle reads the original PolySpace caches in every layout its featurize wrote: the first
version's JSON, one pickle, an .index.json with pickle shards (named with and without ".pkl") and
with npy_dir shard folders (its default storage). The fixtures are written here from the layouts
documented in features/pickle_import.py; each damaged or unknown layout is one line naming the file."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from polyspace_core.cli import main
from polyspace_core.errors import PolySpaceError
from polyspace_core.features.pickle_import import import_pickle
from polyspace_core.features.store import FeatureStore

# the models of a cache: record key -> (T, D); a teacher named by its hub id as the original allowed
SHAPES = {"student": (4, 8), "videomae": (2, 12), "MCG-NJU/videomae-base": (3, 6)}
BASE = "features_hmdb51_train"


def make_records(n: int = 7, dtype=np.float16) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"path": f"/data/hmdb51/train/v{i}.mp4", "label": i % 3,
             **{m: rng.normal(size=shape).astype(dtype) for m, shape in SHAPES.items()}} for i in range(n)]


def write_pickle(root: Path, records: list[dict]) -> Path:
    """No --shard_size: features_<ds>_<split>.pkl, a pickled list of records."""
    path = root / f"{BASE}.pkl"
    path.write_bytes(pickle.dumps(records))
    return path


def write_json(root: Path, records: list[dict]) -> Path:
    """The first featurize: features_<ds>_<split>.json, the records with features as nested lists."""
    path = root / f"{BASE}.json"
    path.write_text(json.dumps([{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()}
                                for r in records]))
    return path


def index_of(records: list[dict], shard_size: int, storage: str | None, names: list[str]) -> dict:
    index = {"dataset": "hmdb51", "root": "/data/hmdb51", "split": "train", "student": "vjepa2",
             "teachers": [m for m in SHAPES if m != "student"], "dtype": "float16", "num_frames": 16,
             "frames_student": 16, "frames_teachers": {"videomae": 16, "MCG-NJU/videomae-base": 16},
             "batch_size": 2, "num_workers": 2, "shard_size": shard_size, "num_samples": len(records),
             "shards": [{"file": name, "start": s, "count": len(records[s:s + shard_size])}
                        for name, s in zip(names, range(0, len(records), shard_size))]}
    if storage is not None:
        index["storage"] = storage
    return index


def write_index_pkl(root: Path, records: list[dict], shard_size: int = 3, old: bool = False) -> Path:
    """--shard_size N --storage pkl: <base>.index.json + <file>.pkl shards. `old`: an index written
    before --storage existed (no storage key, file names with their .pkl suffix)."""
    names = []
    for k, s in enumerate(range(0, len(records), shard_size)):
        name = f"{BASE}_shard_{k:05d}"
        (root / f"{name}.pkl").write_bytes(pickle.dumps(records[s:s + shard_size]))
        names.append(f"{name}.pkl" if old else name)
    path = root / f"{BASE}.index.json"
    path.write_text(json.dumps(index_of(records, shard_size, None if old else "pkl", names), indent=2))
    return path


def write_index_npy_dir(root: Path, records: list[dict], shard_size: int = 3) -> Path:
    """--shard_size N (default --storage npy_dir): <base>.index.json + one folder per shard with
    <model>_concat.npy (rows of every sample) / <model>_offs.npy (n + 1 offsets), labels.npy and
    paths.npy; "/" in a model's name becomes "_" in its file names."""
    names = []
    for k, s in enumerate(range(0, len(records), shard_size)):
        name = f"{BASE}_shard_{k:05d}"
        folder = root / name
        folder.mkdir()
        part = records[s:s + shard_size]
        for m in SHAPES:
            rows = [r[m] for r in part]
            np.save(folder / f"{m.replace('/', '_')}_concat.npy", np.concatenate(rows))
            np.save(folder / f"{m.replace('/', '_')}_offs.npy",
                    np.concatenate([[0], np.cumsum([len(x) for x in rows])]).astype(np.int64))
        np.save(folder / "labels.npy", np.asarray([r["label"] for r in part], dtype=np.int64))
        np.save(folder / "paths.npy", np.asarray([r["path"] for r in part], dtype=np.str_))
        names.append(name)
    path = root / f"{BASE}.index.json"
    path.write_text(json.dumps(index_of(records, shard_size, "npy_dir", names), indent=2))
    return path


LAYOUTS = {"pickle": write_pickle, "json": write_json, "index+pkl": write_index_pkl,
           "index+pkl (old names)": lambda root, records: write_index_pkl(root, records, old=True),
           "index+npy_dir": write_index_npy_dir}


def assert_store_holds(store: FeatureStore, records: list[dict]) -> None:
    assert store.models == list(SHAPES) and store.student == "student"
    assert len(store) == len(records) and store.ok.all()
    assert store.labels.tolist() == [r["label"] for r in records]
    assert store.paths == [r["path"] for r in records]
    for m, shape in SHAPES.items():
        assert store.shape(m) == shape
        expected = torch.from_numpy(np.stack([r[m] for r in records]))
        assert torch.equal(store.array(m), expected), m


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_of_the_original_imports(tmp_path, layout):
    records = make_records()
    path = LAYOUTS[layout](tmp_path, records)
    store = import_pickle(path, tmp_path / "out" / "train", allow_pickle=True, shard_size=2)
    assert_store_holds(store, records)
    # the index's dtype, or the arrays'; JSON lists carry none: float32 unless told
    assert store.dtype == (torch.float32 if layout == "json" else torch.float16)
    manifest = store.manifest
    assert manifest["provenance"]["layout"] == layout.split(" ")[0] and manifest["tokens"] == "imported"
    if layout.startswith("index"):
        student = store.model_info("student")
        assert student["original"] == {"backbone": "vjepa2", "frames": 16} and manifest["dataset"]["name"] == "hmdb51"
    # importing again resumes: every shard is already there
    assert import_pickle(path, tmp_path / "out" / "train", allow_pickle=True, shard_size=2).manifest == manifest


def test_json_features_take_the_dtype_asked_for(tmp_path):
    records = make_records(dtype=np.float32)
    store = import_pickle(write_json(tmp_path, records), tmp_path / "out" / "train")  # JSON: nothing unpickled
    assert store.dtype == torch.float32
    assert_store_holds(store, records)
    half = import_pickle(tmp_path / f"{BASE}.json", tmp_path / "half" / "train", dtype="float16")
    assert half.dtype == torch.float16


def test_npy_dir_needs_no_permission_and_a_folder_stands_for_its_index(tmp_path):
    records = make_records()
    write_index_npy_dir(tmp_path, records)
    store = import_pickle(tmp_path, tmp_path / "out" / "train", class_names=["walk", "run", "jump"])
    assert_store_holds(store, records)
    assert store.class_names == ["walk", "run", "jump"]


@pytest.mark.parametrize("layout", ["pickle", "index+pkl"])
def test_pickle_layouts_need_explicit_permission(tmp_path, layout, monkeypatch):
    import polyspace_core.features.pickle_import as module

    path = LAYOUTS[layout](tmp_path, make_records())
    unpickled = []
    monkeypatch.setattr(module._FeatureUnpickler, "load", lambda self: unpickled.append(self.path))
    with pytest.raises(PolySpaceError, match="--allow-pickle") as error:
        import_pickle(path, tmp_path / "out" / "train")
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert not unpickled and not (tmp_path / "out").exists()


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("where", ["pickle", "shard"])
def test_pickles_build_nothing_but_arrays_even_when_allowed(tmp_path, where):
    records = make_records(2)
    records[1]["student"] = _RunsCode()
    path = write_pickle(tmp_path, records) if where == "pickle" else write_index_pkl(tmp_path, records, shard_size=1)
    with pytest.raises(PolySpaceError, match="refusing to build (posix|os).system"):
        import_pickle(path, tmp_path / "out" / "train", allow_pickle=True)


def _damage(tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A cache damaged in one way; (the path given to import, the file the error must name)."""
    records = make_records()
    if how in ("pkl shard missing", "pkl shard truncated", "pkl shard holds fewer records"):
        index = write_index_pkl(tmp_path, records)
        shard = tmp_path / f"{BASE}_shard_00001.pkl"
        if how == "pkl shard missing":
            shard.unlink()
        elif how == "pkl shard truncated":
            shard.write_bytes(shard.read_bytes()[:40])
        else:
            shard.write_bytes(pickle.dumps(records[3:5]))
        return index, shard
    if how.startswith("npy"):
        index = write_index_npy_dir(tmp_path, records)
        folder = tmp_path / f"{BASE}_shard_00002"
        if how == "npy teacher file missing":
            (folder / "videomae_concat.npy").unlink()
            return index, folder / "videomae_concat.npy"
        if how == "npy offsets damaged":
            np.save(folder / "student_offs.npy", np.asarray([0, 9], dtype=np.int64))
            return index, folder / "student_offs.npy"
        if how == "npy paths pickled":
            np.save(folder / "paths.npy", np.asarray([Path("/v.mp4")], dtype=object), allow_pickle=True)
            return index, folder / "paths.npy"
        if how == "npy shard folder missing":
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()
            return index, folder
    index = write_index_npy_dir(tmp_path, records)
    data = json.loads(index.read_text())
    if how == "index unknown storage":
        data["storage"] = "hdf5"
    elif how == "index shards overlap":
        data["shards"][1]["start"] = 2
    elif how == "index num_samples wrong":
        data["num_samples"] = 99
    elif how == "index not a dict of shards":
        data = {"files": ["a", "b"]}
    elif how == "index not JSON":
        index.write_text("{\"shards\": [")
        return index, index
    index.write_text(json.dumps(data))
    return index, index


DAMAGES = ["pkl shard missing", "pkl shard truncated", "pkl shard holds fewer records", "npy teacher file missing",
           "npy offsets damaged", "npy paths pickled", "npy shard folder missing", "index unknown storage",
           "index shards overlap", "index num_samples wrong", "index not a dict of shards", "index not JSON"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_cache_is_one_line_naming_the_file(tmp_path, how):
    given, named = _damage(tmp_path, how)
    with pytest.raises(PolySpaceError) as error:
        import_pickle(given, tmp_path / "out" / "train", allow_pickle=True)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(named)), message
    assert not (tmp_path / "out" / "train" / "manifest.json").exists()


def test_unknown_layouts_and_records_are_one_line(tmp_path):
    cases = {"cache.txt": b"features", "features_x_train.json": b'"just a string"'}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(PolySpaceError, match="layout of the original featurize|list of feature records"):
            import_pickle(tmp_path / name, tmp_path / "out" / "train", allow_pickle=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolySpaceError, match="its one \\*.index.json \\(found: none\\)"):
        import_pickle(tmp_path / "empty", tmp_path / "out" / "train")
    records = make_records(3)
    del records[2]["videomae"]
    with pytest.raises(PolySpaceError, match="record 2 has no 'videomae'"):
        import_pickle(write_pickle(tmp_path, records), tmp_path / "out" / "train", allow_pickle=True)
    records = make_records(3)
    records[1]["student"] = records[1]["student"][:3]  # ragged: T differs between samples
    with pytest.raises(PolySpaceError, match="record 1 model 'student' has shape \\(3, 8\\)"):
        import_pickle(write_pickle(tmp_path, records), tmp_path / "out2" / "train", allow_pickle=True)


def test_cli_import_pickle_and_featurize_import(tmp_path, capsys):
    records = make_records()
    index = write_index_pkl(tmp_path, records)
    assert main(["import-pickle", str(index), "--out", str(tmp_path / "o")]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert main(["import-pickle", str(index), "--allow-pickle", "--out", str(tmp_path / "o"), "--shard_size", "4"]) == 0
    assert_store_holds(FeatureStore.open(tmp_path / "o" / "train", verify=True), records)
    npy = tmp_path / "npy"
    npy.mkdir()
    write_index_npy_dir(npy, records)
    assert main(["featurize", "--import-pickle", str(npy / f"{BASE}.index.json"), "--out", str(tmp_path / "o"),
                 "--split", "validation"]) == 0
    assert main(["features-info", str(tmp_path / "o" / "validation"), "--verify"]) == 0
    assert "MCG-NJU/videomae-base" in capsys.readouterr().out
