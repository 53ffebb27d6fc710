"""Converter training read from the store a batch at a time gives what the whole split in memory
gives: closed forms from float64 sums over batches, the learned kinds' standardisation, the
validation history and the held-out fidelity; the store's views gather the right rows."""

import pytest
import torch

from polyspace_core.align.converters import (
    ConverterConfig,
    TokenMoments,
    build_converter,
    pair_moments,
    resample_tokens,
)
from polyspace_core.align.metrics import TokenFidelity, mean_cosine, r2_score
from polyspace_core.align.train import evaluate_converter, pairs_from_store, train_converter
from polyspace_core.features.store import FeatureStoreWriter

T_S, D_S, T_T, D_T = 4, 10, 2, 6


def write_store(split_dir, n, seed, shard_size=7, dtype="float16", failed=(3,)):
    """A multi-shard fp16 store whose features share a large common component (as video
    backbones' tokens do) with one failed sample (NaN rows)."""
    g = torch.Generator().manual_seed(seed)
    x = 20 + torch.randn(n, T_S, D_S, generator=g)
    w = torch.randn(D_S, D_T, generator=g) / D_S ** 0.5
    y = -8 + resample_tokens(x - 20, T_T) @ w + 0.3 * torch.randn(n, T_T, D_T, generator=g)
    status = ["failed: cannot decode" if i in failed else "ok" for i in range(n)]
    writer = FeatureStoreWriter(split_dir, models=[{"name": "s", "role": "student", "T": T_S, "dim": D_S},
                                                   {"name": "t", "role": "teacher", "T": T_T, "dim": D_T}],
                                dtype=dtype, tokens="temporal", shard_size=shard_size,
                                paths=[f"v{i}.avi" for i in range(n)], labels=[i % 2 for i in range(n)],
                                class_names=["a", "b"])
    for k, (s, e) in enumerate(writer.ranges):
        writer.write_shard(k, {"s": x[s:e], "t": y[s:e]}, status[s:e], e - s, 0)
    return writer.finalize()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return write_store(root / "train", 40, 0), write_store(root / "validation", 17, 1, failed=())


def in_memory(store):
    ok = torch.from_numpy(store.ok)
    return store.array("s")[ok].float(), store.array("t")[ok].float()


def test_views_gather_the_rows_of_the_array(stores):
    store = stores[0]
    ids = torch.tensor([39, 0, 8, 7, 7, 21, 13])  # any order, repeats, across shards
    assert torch.equal(store.rows("s", ids), store.array("s")[ids])
    view = store.view("t", store.indices(), torch.float32)
    assert view.shape == (39, T_T, D_T) and len(view) == 39
    ok_t = store.array("t")[torch.from_numpy(store.ok)].float()
    assert torch.equal(view[torch.tensor([5, 2])], ok_t[[5, 2]]) and torch.equal(view[:], ok_t)
    assert torch.equal(view[4], ok_t[4]) and view[4:9].dtype == torch.float32
    with pytest.raises(IndexError):
        store.rows("s", [40])


def test_closed_forms_from_batched_sums_match_the_direct_solution():
    g = torch.Generator().manual_seed(2)
    x = 50 + torch.randn(30, T_S, D_S, generator=g, dtype=torch.float64)
    y = -30 + torch.randn(30, T_T, D_T, generator=g, dtype=torch.float64)
    ridge = build_converter(ConverterConfig("ridge", D_S, D_T, T_S, T_T, ridge_alpha=0.1))
    moments = pair_moments([(x[i:i + 7], y[i:i + 7]) for i in range(0, 30, 7)], ridge)
    # the reference: the split's centred token matrices in float64, solved directly
    xs = resample_tokens(x, T_T).reshape(-1, D_S)
    ys = y.reshape(-1, D_T)
    xc, yc = xs - xs.mean(0), ys - ys.mean(0)
    torch.testing.assert_close(moments.gram_xx(), xc.T @ xc, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(moments.cross_xy(), xc.T @ yc, rtol=1e-10, atol=1e-8)
    ridge.fit_moments(moments)
    gram = xc.T @ xc
    gram = gram + 0.1 * gram.trace() / D_S * torch.eye(D_S, dtype=torch.float64)
    weight = torch.linalg.solve(gram, xc.T @ yc)
    torch.testing.assert_close(ridge.weight.double(), weight, rtol=1e-4, atol=1e-5)
    proc = build_converter(ConverterConfig("procrustes", D_S, D_T, T_S, T_T)).fit_moments(moments)
    u, s, vh = torch.linalg.svd(xc.T @ yc, full_matrices=False)
    rotation = u @ vh
    torch.testing.assert_close(proc.rotation.double(), rotation, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(proc.scale.double(), s.sum() / (xc @ rotation).pow(2).sum(), rtol=1e-5, atol=1e-7)
    stats = TokenMoments(full=False).add(xs[:11]).add(xs[11:])
    torch.testing.assert_close(stats.std(), xs.std(0), rtol=1e-9, atol=1e-9)


def test_token_fidelity_matches_the_whole_split_metrics():
    g = torch.Generator().manual_seed(4)
    target = 7 + torch.randn(23, 3, 5, generator=g)
    pred = target + 0.5 * torch.randn(23, 3, 5, generator=g)
    acc = TokenFidelity()
    for i in range(0, 23, 5):
        acc.add(pred[i:i + 5], target[i:i + 5])
    got = acc.result()
    assert got["cosine"] == pytest.approx(mean_cosine(pred, target), rel=1e-12)
    assert got["r2"] == pytest.approx(r2_score(target, pred), rel=1e-9)


@pytest.mark.parametrize("kind", ["procrustes", "ridge", "mlp"])
def test_training_from_the_store_matches_training_in_memory(stores, kind):
    train_store, val_store = stores
    cfg = ConverterConfig(kind, D_S, D_T, T_S, T_T, hidden=16, depth=1)
    streamed = train_converter(pairs_from_store(train_store.split_dir, "s", "t"),
                               pairs_from_store(val_store.split_dir, "s", "t"), cfg, "l2", epochs=3, batch=8,
                               lr=1e-2, progress=False)
    memory = train_converter(in_memory(train_store), in_memory(val_store), cfg, "l2", epochs=3, batch=8, lr=1e-2,
                             progress=False)
    assert len(streamed.history) == len(memory.history)
    for a, b in zip(streamed.history, memory.history):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    for key, value in memory.converter.state_dict().items():
        torch.testing.assert_close(streamed.converter.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    # held-out fidelity read a batch at a time == on the split in memory
    got = evaluate_converter(streamed.converter, *pairs_from_store(val_store.split_dir, "s", "t"), batch=5)
    want = evaluate_converter(streamed.converter, *in_memory(val_store), batch=1000)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
