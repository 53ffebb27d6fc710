"""Feature store: round trip per dtype, memory-mapping, resume receipts, damage detection (the import of the
original's caches: test_features_pickle_import.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from polyspace_core.errors import PolySpaceError
from polyspace_core.features.store import FeatureDataset, FeatureStore, FeatureStoreWriter, mmap_safetensors, shard_name

MODELS = [{"name": "student", "role": "student", "T": 3, "dim": 4},
          {"name": "teacher_a", "role": "teacher", "T": 1, "dim": 6}]


def make_writer(split_dir, dtype="float32", n=5, shard_size=2, labels=None):
    return FeatureStoreWriter(split_dir, models=MODELS, dtype=dtype, tokens="temporal", shard_size=shard_size,
                              paths=[f"v{i}.mp4" for i in range(n)], labels=labels or [i % 3 for i in range(n)],
                              class_names=["a", "b", "c"])


def fill(writer, feats, status=None):
    for k, (s, e) in enumerate(writer.ranges):
        st = status[s:e] if status else ["ok"] * (e - s)
        writer.write_shard(k, {m: x[s:e] for m, x in feats.items()}, st, videos_decoded=e - s,
                           frames_decoded=8 * (e - s))


def random_feats(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"student": torch.randn(n, 3, 4, generator=g), "teacher_a": torch.randn(n, 1, 6, generator=g)}


@pytest.mark.parametrize("dtype,torch_dtype", [("float32", torch.float32), ("float16", torch.float16),
                                                ("bfloat16", torch.bfloat16)])
def test_round_trip_dtype_from_manifest(tmp_path, dtype, torch_dtype):
    writer = make_writer(tmp_path / "train", dtype)
    feats = random_feats()
    fill(writer, feats)
    store = writer.finalize({"test": True})
    again = FeatureStore.open(tmp_path / "train", verify=True)
    assert again.dtype == torch_dtype and again.manifest["dtype"] == dtype
    assert len(again) == 5 and again.models == ["student", "teacher_a"]
    assert again.student == "student" and again.teachers == ["teacher_a"]
    for m, x in feats.items():
        got = again.array(m)
        assert got.dtype == torch_dtype and got.shape == x.shape
        assert torch.equal(got, x.to(torch_dtype))
    assert again.labels.dtype == np.int64 and again.labels.tolist() == [0, 1, 2, 0, 1]
    assert again.ok.all() and again.class_names == ["a", "b", "c"]
    assert again.manifest["decodes"] == {"videos_decoded": 5, "frames_decoded": 40}
    assert [s.file for s in store.shards] == [shard_name(k) for k in range(3)]


def test_fp16_store_is_half_the_size(tmp_path):
    models = [{"name": "a", "T": 8, "dim": 64}, {"name": "b", "T": 8, "dim": 96}]
    sizes = {}
    for dtype in ("float32", "float16"):
        w = FeatureStoreWriter(tmp_path / dtype, models=models, dtype=dtype, tokens="temporal", shard_size=20,
                               paths=[str(i) for i in range(40)], labels=[0] * 40, class_names=["a"])
        for k, (s, e) in enumerate(w.ranges):
            w.write_shard(k, {"a": torch.randn(e - s, 8, 64), "b": torch.randn(e - s, 8, 96)}, ["ok"] * (e - s), 0, 0)
        sizes[dtype] = w.finalize().disk_bytes()
    # only the int64 sample index and the headers keep it from exactly 0.5
    assert 0.5 < sizes["float16"] / sizes["float32"] <= 0.51


def test_reader_memory_maps_and_matches_safetensors(tmp_path):
    w = make_writer(tmp_path / "s", shard_size=5)
    fill(w, random_feats())
    store = w.finalize()
    reference = load_file(tmp_path / "s" / shard_name(0))
    mapped, meta = mmap_safetensors(tmp_path / "s" / shard_name(0))
    assert json.loads(meta["polyspace"])["fingerprint"] == w.fingerprint
    for k, v in reference.items():
        assert torch.equal(mapped[k], v)
    # one shard: array() points into a memory mapping of the shard file, not a copy
    arr = store.array("student")
    shard = str((tmp_path / "s" / shard_name(0)).resolve())
    maps = [line.split() for line in open("/proc/self/maps") if line.rstrip().endswith(shard)]
    ranges = [tuple(int(x, 16) for x in m[0].split("-")) for m in maps]
    assert any(lo <= arr.data_ptr() < hi for lo, hi in ranges), "array() is not memory-mapped"
    assert store.sample(3, "teacher_a").shape == (1, 6)


def test_failed_samples_are_nan_and_masked(tmp_path):
    w = make_writer(tmp_path / "s")
    feats = random_feats()
    for m in feats:
        feats[m][2] = float("nan")
    status = ["ok", "ok", "failed: bad.mp4: cannot open", "ok", "ok"]
    fill(w, feats, status)
    store = w.finalize()
    assert store.ok.tolist() == [True, True, False, True, True]
    assert store.failures == [(2, "v2.mp4", "bad.mp4: cannot open")]
    assert torch.isnan(store.array("student")[2]).all()
    ds = FeatureDataset(store, ["student"])
    assert len(ds) == 4 and [ds[i]["index"] for i in range(4)] == [0, 1, 3, 4]
    item = ds[2]
    assert item["student"].dtype == torch.float32 and torch.equal(item["student"], feats["student"][3])
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 0
    with pytest.raises(PolySpaceError, match="failed extraction"):
        FeatureDataset(store, indices=[2])
    with pytest.raises(PolySpaceError, match="not in the feature store"):
        FeatureDataset(store, ["nope"])


def test_dataset_keeps_stored_dtype_on_request(tmp_path):
    w = make_writer(tmp_path / "s", "float16")
    fill(w, random_feats())
    ds = FeatureDataset(w.finalize(), as_dtype=None)
    assert ds[0]["student"].dtype == torch.float16
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert batch["student"].shape == (5, 3, 4) and batch["teacher_a"].shape == (5, 1, 6)


def test_pending_and_damaged_shards_are_redone(tmp_path):
    split = tmp_path / "s"
    w = make_writer(split)
    feats = random_feats()
    assert w.pending() == [0, 1, 2]
    w.write_shard(0, {m: x[0:2] for m, x in feats.items()}, ["ok"] * 2, 2, 16)
    w.write_shard(1, {m: x[2:4] for m, x in feats.items()}, ["ok"] * 2, 2, 16)
    assert make_writer(split).pending() == [2]
    # flip one byte in shard 1: its checksum no longer matches the receipt -> redo it
    data = bytearray((split / shard_name(1)).read_bytes())
    data[-3] ^= 0xFF
    (split / shard_name(1)).write_bytes(bytes(data))
    # a shard written but killed before its receipt counts as not done
    w.write_shard(2, {m: x[4:5] for m, x in feats.items()}, ["ok"], 1, 8)
    (split / "progress" / "shard_00002.json").unlink()
    assert make_writer(split).pending() == [1, 2]
    with pytest.raises(PolySpaceError, match="rerun the same featurize command"):
        make_writer(split).finalize()
    with pytest.raises(PolySpaceError, match="did not finish"):
        FeatureStore.open(split)


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    split = tmp_path / "s"
    w = make_writer(split)
    fill(w, random_feats())
    w.finalize()
    other = make_writer(split, dtype="float16")
    with pytest.raises(PolySpaceError, match="--overwrite"):
        other.check_compatible()
    other.clear()
    other.check_compatible()
    assert other.pending() == [0, 1, 2] and not (split / "manifest.json").exists()


def test_open_errors_are_one_line(tmp_path):
    with pytest.raises(PolySpaceError, match="no feature store here") as e:
        FeatureStore.open(tmp_path / "missing")
    assert "\n" not in str(e.value)
    w = make_writer(tmp_path / "s")
    fill(w, random_feats())
    w.finalize()
    (tmp_path / "s" / shard_name(1)).write_bytes(b"\x00" * 4)
    store = FeatureStore.open(tmp_path / "s")
    with pytest.raises(PolySpaceError, match="safetensors"):
        store.array("student")
    with pytest.raises(PolySpaceError, match="checksum|not a readable"):
        store.verify()


def test_nan_features_of_an_ok_sample_stop_training_and_evaluation_readers(tmp_path):
    """Failed samples are NaN by design and left out; NaN in a sample marked ok is a damaged store,
    and every reader that trains or scores on it (fusion's cached batches, the converters' pairs)
    stops with one line naming the shard and the sample, instead of a silent NaN loss or number."""
    from polyspace_core.align.train import pairs_from_store
    from polyspace_core.fusion.data import cached_batches

    w = make_writer(tmp_path / "s")
    feats = random_feats()
    feats["student"][2] = float("nan")  # failed: NaN by design
    feats["teacher_a"][2] = float("nan")
    feats["teacher_a"][3, 0, 1] = float("inf")  # ok, yet not finite
    fill(w, feats, ["ok", "ok", "failed: bad.mp4: cannot open", "ok", "ok"])
    store = w.finalize()

    store.check_finite("student")  # the failed row's NaN is not an error
    assert cached_batches(store, ["student"], batch=2, shuffle=False).num_samples == 4
    for read in (lambda: cached_batches(store, ["student", "teacher_a"], batch=2, shuffle=False),
                 lambda: pairs_from_store(tmp_path / "s", "student", "teacher_a")):
        with pytest.raises(PolySpaceError) as error:
            read()
        message = str(error.value)
        assert str(tmp_path / "s" / shard_name(1)) in message and "'teacher_a' hold NaN/inf for 1 sample(s)" in message
        assert "first: #3, v3.mp4" in message


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shard_written_in_batches_is_the_shard_written_whole(tmp_path, dtype):
    """Rows streamed in any batches, in any order, give the bytes of the whole-shard write, a file
    safetensors itself reads, and NaN in the rows never written (a failed clip)."""
    feats = random_feats(n=6, seed=3)
    status = ["ok", "ok", "failed: cannot decode", "ok", "ok", "ok"]
    whole = make_writer(tmp_path / "whole", dtype, n=6, shard_size=6)
    whole.write_shard(0, {m: torch.where(torch.tensor([s == "ok" for s in status])[:, None, None], x, float("nan"))
                          for m, x in feats.items()}, status, 5, 40)
    streamed = make_writer(tmp_path / "streamed", dtype, n=6, shard_size=6)
    shard = streamed.open_shard(0)
    for rows in ([4, 0], [5], [1, 3]):  # out of order, gaps, the failed row 2 never written
        for m, x in feats.items():
            shard.write_rows(m, rows, x[rows])
    assert not (tmp_path / "streamed" / shard_name(0)).exists()  # only a temp file until finish
    rec = shard.finish(status, 5, 40)
    a, b = (p / shard_name(0) for p in (tmp_path / "whole", tmp_path / "streamed"))
    assert a.read_bytes() == b.read_bytes() and rec["bytes"] == b.stat().st_size
    loaded = load_file(b)
    assert torch.equal(loaded["index"], torch.arange(6))
    for m, x in feats.items():
        ok = torch.tensor([s == "ok" for s in status])
        assert torch.equal(loaded[m][ok], x.to(loaded[m].dtype)[ok]) and torch.isnan(loaded[m][2]).all()
    store = streamed.finalize()
    assert store.status[2].startswith("failed") and not store.ok[2]
    assert [p.name for p in (tmp_path / "streamed").iterdir() if p.name.endswith(".tmp")] == []


def test_interrupted_shard_leaves_no_shard_and_is_redone(tmp_path):
    """A shard whose writer stops before finish is not a shard: no file under its name, no receipt,
    the temp file is removed by close() (or by the next open_shard after a SIGKILL), and the
    shard is pending; finishing it later gives the same bytes as an uninterrupted write."""
    feats = random_feats(n=4, seed=5)
    w = make_writer(tmp_path / "train", n=4, shard_size=4)
    shard = w.open_shard(0)
    shard.write_rows("student", [0, 1], feats["student"][:2])
    assert w.pending() == [0] and not (tmp_path / "train" / shard_name(0)).exists()
    temps = list((tmp_path / "train").glob(".shard_00000.safetensors.*.tmp"))
    assert len(temps) == 1  # as a SIGKILL would leave it
    with pytest.raises(ValueError, match="no features of student for ok rows"):
        shard.finish(["ok"] * 4, 4, 0)  # ok rows without features are refused, never NaN-filled
    again = w.open_shard(0)  # the stale temp file of the killed writer goes
    assert not any(p.exists() for p in temps)
    for m, x in feats.items():
        again.write_rows(m, range(4), x)
    again.finish(["ok"] * 4, 4, 0)
    ref = make_writer(tmp_path / "ref", n=4, shard_size=4)
    ref.write_shard(0, feats, ["ok"] * 4, 4, 0)
    assert (tmp_path / "train" / shard_name(0)).read_bytes() == (tmp_path / "ref" / shard_name(0)).read_bytes()
    assert w.pending() == []


def test_shard_writer_refuses_wrong_rows(tmp_path):
    w = make_writer(tmp_path / "train", n=4, shard_size=4)
    shard = w.open_shard(0)
    try:
        with pytest.raises(ValueError, match="expected"):
            shard.write_rows("student", [0], torch.zeros(1, 2, 4))
        with pytest.raises(ValueError, match="outside"):
            shard.write_rows("student", [4], torch.zeros(1, 3, 4))
    finally:
        shard.close()
    assert list((tmp_path / "train").glob("*.tmp")) == []


def test_shards_written_whole_before_streaming_still_resume_and_open(tmp_path):
    """A store interrupted before the streaming writer existed: its shard files came from
    safetensors' own `save` (another byte layout). Their receipts still count, the rest is
    written by the new writer, and the store opens with every value."""
    import hashlib

    from safetensors.torch import save

    from polyspace_core.features.store import FORMAT, PROGRESS_DIR
    from polyspace_core.io import CHECKSUM, atomic_write_bytes, atomic_write_json, digest_bytes

    feats = random_feats(n=5, seed=9)
    w = make_writer(tmp_path / "train", n=5, shard_size=2)
    start, end = w.ranges[0]
    meta = json.dumps({"format": FORMAT, "fingerprint": w.fingerprint, "start": start, "end": end}, sort_keys=True)
    data = save({"student": feats["student"][start:end].contiguous(), "teacher_a": feats["teacher_a"][start:end],
                 "index": torch.arange(start, end)}, metadata={"polyspace": meta})
    atomic_write_bytes(tmp_path / "train" / shard_name(0), data)
    atomic_write_json(tmp_path / "train" / PROGRESS_DIR / "shard_00000.json", {
        "file": shard_name(0), "start": start, "end": end, "sha256": hashlib.sha256(data).hexdigest(),
        CHECKSUM: digest_bytes(data)[CHECKSUM], "bytes": len(data), "fingerprint": w.fingerprint,
        "status": ["ok"] * 2, "videos_decoded": 2, "frames_decoded": 16})
    assert w.pending() == [1, 2]  # the old shard is done; no redo
    for k in w.pending():
        s, e = w.ranges[k]
        w.write_shard(k, {m: x[s:e] for m, x in feats.items()}, ["ok"] * (e - s), e - s, 0)
    store = FeatureStore.open(w.finalize().split_dir, verify=True)
    for m, x in feats.items():
        assert torch.equal(store.array(m), x) and torch.equal(store.rows(m, [4, 0, 1]), x[[4, 0, 1]])
