"""Converter training: it learns a real nonlinear map, selects on validation, is deterministic,
and its checkpoints round-trip."""

import json

import pytest
import torch

from polyspace_core.align.converters import CONVERTER_KINDS, ConverterConfig, build_converter, resample_tokens
from polyspace_core.align.metrics import r2_score
from polyspace_core.align.train import (
    evaluate_converter,
    load_converter,
    load_converter_set,
    predict,
    save_converter,
    save_converter_set,
    train_converter,
)
from polyspace_core.errors import PolySpaceError

T_S, D_S, T_T, D_T = 6, 16, 3, 12


def make_pairs(n, seed, noise=0.05, quad=1.0, lin=0.5):
    """Teacher tokens = a fixed random map of the time-resampled student tokens + noise: a
    quadratic part (no linear component, so a linear fit cannot explain it) and a linear part."""
    fixed = torch.Generator().manual_seed(1234)  # the same map for every split
    w1 = torch.randn(D_S, 8, generator=fixed) / D_S ** 0.5
    w2 = torch.randn(8, D_T, generator=fixed) / 8 ** 0.5
    w_lin = torch.randn(D_S, D_T, generator=fixed) / D_S ** 0.5
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, T_S, D_S, generator=g)
    xt = 1.5 * resample_tokens(x, T_T)
    y = quad * ((xt @ w1) ** 2 - 1) @ w2 + lin * xt @ w_lin
    return x, y + noise * torch.randn(y.shape, generator=g)


@pytest.fixture(scope="module")
def splits():
    return make_pairs(384, 0), make_pairs(128, 1), make_pairs(128, 2)


@pytest.fixture(scope="module")
def mostly_linear_splits():
    return tuple(make_pairs(n, seed, quad=0.3, lin=1.0) for n, seed in ((384, 0), (128, 1), (128, 2)))


def test_mlp_learns_a_nonlinear_map_beyond_the_linear_baseline(splits):
    train, val, test = splits
    cfg = ConverterConfig("mlp", D_S, D_T, T_S, T_T, hidden=64, depth=2)
    fit = train_converter(train, val, cfg, "l2+0.1*cos", epochs=15, batch=64, lr=5e-3, progress=False)
    conv, hist = fit.converter, fit.history
    untrained = build_converter(cfg)
    r2_trained = r2_score(test[1], predict(conv, test[0]))
    r2_untrained = r2_score(test[1], predict(untrained, test[0]))
    ridge = train_converter(train, val, ConverterConfig("ridge", D_S, D_T, T_S, T_T), "l2", progress=False).converter
    r2_ridge = r2_score(test[1], predict(ridge, test[0]))
    assert r2_untrained < 0.1
    assert r2_trained > 0.8, [row["val_r2"] for row in hist]
    assert r2_trained > r2_ridge + 0.5  # the map is mostly quadratic; a linear fit cannot reach it
    assert hist[-1]["val_loss"] < 0.5 * fit.initial_val["loss"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert [row["epoch"] for row in hist] == list(range(1, 16))
    assert all({"train_loss", "train_l2", "train_cos", "val_loss", "val_cosine", "val_r2"} <= set(row) for row in hist)
    json.dumps(fit.record())  # the history and the run's summary are JSON-ready
    fid = evaluate_converter(conv, *test)
    assert set(fid) == {"cosine", "r2", "cka", "mutual_knn", "retrieval_top1"}
    assert fid["r2"] == pytest.approx(r2_trained, rel=1e-6)
    assert fid["cka"] > 0.8 and fid["retrieval_top1"] > 0.9


@pytest.mark.parametrize("kind", [k for k in CONVERTER_KINDS if k != "mlp"])
def test_every_other_kind_improves_on_held_out_data(mostly_linear_splits, kind):
    train, val, test = mostly_linear_splits
    cfg = ConverterConfig(kind, D_S, D_T, T_S, T_T, hidden=32, depth=1, heads=2, latents=4)
    fit = train_converter(train, val, cfg, "l2", epochs=10, batch=64, lr=5e-3, progress=False)
    conv = fit.converter
    r2 = r2_score(test[1], predict(conv, test[0]))
    assert r2 > 0.3, (kind, [row["val_r2"] for row in fit.history])
    if not conv.closed_form:
        assert r2 > fit.initial_val["r2"] + 0.3


def test_selection_keeps_the_best_validation_epoch_not_the_last():
    # 24 noisy training samples, a wide model and a high lr: validation loss turns up again
    train, val = make_pairs(24, 10, noise=1.0), make_pairs(64, 11, noise=1.0)
    cfg = ConverterConfig("mlp", D_S, D_T, T_S, T_T, hidden=128, depth=2)
    fit = train_converter(train, val, cfg, "l2", epochs=20, batch=8, lr=1e-2, progress=False)
    conv, best, val_loss = fit.converter, fit.best_epoch, [row["val_loss"] for row in fit.history]
    assert val_loss[best - 1] == min(val_loss) == fit.best_val_loss
    assert best < 20 and val_loss[-1] > fit.best_val_loss
    # the returned weights are the best epoch's: recomputing the validation loss (in the
    # standardised teacher units learned kinds train in) gives its value
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(conv.to_unit(conv(val[0])), conv.to_unit(val[1]))
    assert float(mse) == pytest.approx(fit.best_val_loss, rel=1e-4)


def test_training_is_deterministic_for_a_seed(splits):
    train, val, _ = splits
    cfg = ConverterConfig("resampler", D_S, D_T, T_S, T_T, hidden=16, depth=1)
    h1, h2, h3 = (train_converter(train, val, cfg, "l2+nce", epochs=2, batch=64, seed=seed, progress=False).history
                  for seed in (3, 3, 4))

    def column(history, key):
        return [row[key] for row in history]

    assert column(h1, "val_loss") == column(h2, "val_loss") and column(h1, "train_loss") == column(h2, "train_loss")
    assert column(h1, "val_loss") != column(h3, "val_loss")


def test_bad_training_inputs_are_clear_errors(splits):
    train, val, _ = splits
    cfg = ConverterConfig("linear", D_S, D_T, T_S, T_T)
    with pytest.raises(PolySpaceError, match=r"teacher features have shape .*d_out"):
        train_converter(train, (val[0], val[1][..., :5]), cfg, progress=False)
    with pytest.raises(PolySpaceError, match="student features have shape"):
        train_converter((train[0][:, :2], train[1]), val, cfg, progress=False)
    with pytest.raises(PolySpaceError, match="epochs"):
        train_converter(train, val, cfg, epochs=0, progress=False)
    with pytest.raises(PolySpaceError, match="loss"):
        train_converter(train, val, cfg, loss_weights="l2+kl", progress=False)


@pytest.mark.parametrize("kind", ["procrustes", "attention"])
def test_checkpoint_roundtrip(tmp_path, splits, kind):
    train, val, test = splits
    cfg = ConverterConfig(kind, D_S, D_T, T_S, T_T, hidden=16, depth=1, heads=2, latents=4)
    fit = train_converter(train, val, cfg, "l2", epochs=1, batch=64, progress=False)
    conv = fit.converter
    save_converter(tmp_path / "c", conv, cfg, fit.record(), info={"student": "s", "teacher": "t"})
    saved = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert saved == ["config.json", "converter.safetensors", "history.json"]
    loaded = load_converter(tmp_path / "c")
    assert loaded.config == cfg and loaded.info["teacher"] == "t" and not loaded.training
    assert torch.equal(predict(loaded, test[0]), predict(conv, test[0]))


def test_checkpoint_errors(tmp_path, splits):
    train, val, _ = splits
    cfg = ConverterConfig("linear", D_S, D_T, T_S, T_T)
    conv = train_converter(train, val, cfg, "l2", epochs=1, progress=False).converter
    save_converter(tmp_path / "c", conv)
    with pytest.raises(PolySpaceError, match="file not found"):
        load_converter(tmp_path / "missing")
    # weights that belong to another config
    other = build_converter(ConverterConfig("linear", D_S, 5, T_S, T_T))
    (tmp_path / "c" / "converter.safetensors").unlink()
    save_converter(tmp_path / "o", other)
    (tmp_path / "o" / "converter.safetensors").rename(tmp_path / "c" / "converter.safetensors")
    with pytest.raises(PolySpaceError, match="were written"):  # the record of the file it replaced
        load_converter(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    del meta["checksums"]  # as a checkpoint from before checksums were recorded
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(PolySpaceError, match="do not fit the saved config"):
        load_converter(tmp_path / "c")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(PolySpaceError, match="not a converter checkpoint"):
        load_converter(tmp_path / "bad")


def test_converter_set_roundtrip(tmp_path, splits):
    train, val, test = splits
    cfg = ConverterConfig("ridge", D_S, D_T, T_S, T_T)
    a = train_converter(train, val, cfg, progress=False).converter
    b = train_converter(train, val, ConverterConfig("procrustes", D_S, D_T, T_S, T_T), progress=False).converter
    save_converter_set(tmp_path, "vjepa2", {"videomae": a, "org/timesformer-base": b})
    assert (tmp_path / "org_timesformer-base" / "config.json").is_file()
    student, convs = load_converter_set(tmp_path, teachers=["org/timesformer-base"])
    assert student == "vjepa2" and list(convs) == ["org/timesformer-base"]
    assert torch.equal(predict(convs["org/timesformer-base"], test[0]), predict(b, test[0]))
    with pytest.raises(PolySpaceError, match="no converter for teacher"):
        load_converter_set(tmp_path, teachers=["vivit"])


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_learned_kinds_see_past_a_large_common_component(mostly_linear_splits, kind):
    """Backbone tokens share a big common vector; learned kinds standardise with the training
    statistics, so the same map is learned whatever offset and scale the features carry."""
    (xs, ys), (xv, yv), _ = mostly_linear_splits
    offset_x, offset_y = 50.0 + torch.arange(D_S) * 0.1, -80.0 + torch.arange(D_T) * 0.2
    shifted = ((xs * 0.01 + offset_x, ys * 0.01 + offset_y), (xv * 0.01 + offset_x, yv * 0.01 + offset_y))
    cfg = ConverterConfig(kind, D_S, D_T, T_S, T_T, hidden=32, depth=1)
    plain = train_converter((xs, ys), (xv, yv), cfg, "l2+cos", epochs=15, batch=32, lr=3e-3, progress=False).converter
    conv = train_converter(*shifted, cfg, "l2+cos", epochs=15, batch=32, lr=3e-3, progress=False).converter
    assert torch.allclose(conv.in_mean, shifted[0][0].reshape(-1, D_S).mean(0), atol=1e-3)
    r2_plain = r2_score(yv, predict(plain, xv))
    r2_shifted = r2_score(shifted[1][1], predict(conv, shifted[1][0]))
    assert r2_shifted > 0.6 and r2_shifted == pytest.approx(r2_plain, abs=0.05)
