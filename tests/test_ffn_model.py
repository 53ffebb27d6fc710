"""Temporal shift, per-stream BatchNorm selection, sample isolation, FFN forward and ImageNet loading."""

import pytest
import torch
from torch import nn

from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.pretrained import load_imagenet_weights
from polyspace_core.ffn.shift import ShiftedConv, temporal_shift
from polyspace_core.ffn.tsm_resnet import StreamBatchNorm2d, build_model


def _ffn(**kw):
    torch.manual_seed(0)
    return build_model("tiny", num_classes=5, frame_counts=(4, 8, 16), ffn=True, **kw)


def test_temporal_shift_matches_reference_and_pads_with_zeros():
    clips, t, c = 2, 4, 16
    x = torch.randn(clips * t, c, 3, 3)
    out = temporal_shift(x, num_frames=t, shift_div=8).view(clips, t, c, 3, 3)
    ref = x.view(clips, t, c, 3, 3)
    fold = c // 8
    for n in range(clips):
        for i in range(t):
            back = ref[n, i + 1, :fold] if i + 1 < t else torch.zeros_like(ref[n, i, :fold])
            fwd = ref[n, i - 1, fold:2 * fold] if i > 0 else torch.zeros_like(ref[n, i, :fold])
            assert torch.equal(out[n, i, :fold], back)
            assert torch.equal(out[n, i, fold:2 * fold], fwd)
            assert torch.equal(out[n, i, 2 * fold:], ref[n, i, 2 * fold:])


def test_temporal_shift_rejects_partial_clips_and_can_be_disabled():
    x = torch.randn(6, 16, 2, 2)
    with pytest.raises(PolySpaceError, match="whole number"):
        temporal_shift(x, num_frames=4)
    assert temporal_shift(x, num_frames=4 - 1, shift_div=0) is x


def test_stream_selection_nearest_trained_count_ties_to_higher():
    model = _ffn()
    chosen = {t: model.frame_counts[model.stream_for(t)] for t in (1, 4, 5, 6, 7, 8, 10, 12, 14, 16, 32)}
    assert chosen == {1: 4, 4: 4, 5: 4, 6: 8, 7: 8, 8: 8, 10: 8, 12: 16, 14: 16, 16: 16, 32: 16}


def test_inference_uses_the_batchnorms_of_the_selected_stream():
    model = _ffn().eval()
    clips = {t: torch.randn(2, 3, t, 32, 32) for t in (4, 6, 8, 12, 16)}
    with torch.no_grad():
        before = {t: model(x) for t, x in clips.items()}
        # disturb only the 8F stream's statistics: 6F (nearest 8, tie -> 8) and 8F must change, the rest not
        for m in model.modules():
            if isinstance(m, StreamBatchNorm2d):
                m.bns[1].running_mean.add_(0.5)
        after = {t: model(x) for t, x in clips.items()}
    for t in (4, 12, 16):
        assert torch.equal(before[t], after[t]), t
    for t in (6, 8):
        assert not torch.allclose(before[t], after[t]), t


@pytest.mark.parametrize("frames", [4, 8, 16, 6, 12])
def test_a_stream_never_mixes_samples_of_a_batch(frames):
    model = _ffn().eval()
    x = torch.randn(3, 3, frames, 32, 32)
    y = x.clone()
    y[1] += torch.randn_like(y[1])
    with torch.no_grad():
        out_x, out_y = model(x), model(y)
    assert torch.equal(out_x[0], out_y[0]) and torch.equal(out_x[2], out_y[2])
    assert not torch.allclose(out_x[1], out_y[1])


def test_the_isolation_check_detects_a_shift_with_the_wrong_frame_count():
    # the official code shifted the 4F stream with 16 segments: four 4-frame clips then read each other
    frames = torch.randn(4 * 4, 16, 2, 2)
    perturbed = frames.clone()
    perturbed[4:8] += 1.0  # clip 1
    wrong = temporal_shift(perturbed, num_frames=16) - temporal_shift(frames, num_frames=16)
    right = temporal_shift(perturbed, num_frames=4) - temporal_shift(frames, num_frames=4)
    assert wrong[:4].abs().sum() > 0 and wrong[8:].abs().sum() > 0
    assert right[:4].abs().sum() == 0 and right[8:].abs().sum() == 0


def test_training_forward_returns_one_logit_per_stream_and_updates_each_streams_bn():
    model = _ffn().train()
    v4, v8, v16 = (torch.randn(2, 3, t, 32, 32) for t in (4, 8, 16))
    out_4, out_8, out_16 = model(v4, v8, v16)
    assert out_4.shape == out_8.shape == out_16.shape == (2, 5)
    stem = model.bn1.bns
    assert all(int(bn.num_batches_tracked) == 1 for bn in stem)
    assert not torch.allclose(stem[0].running_var, stem[2].running_var)
    with pytest.raises(PolySpaceError, match="trains \\[4, 8, 16\\]"):
        model(torch.randn(2, 3, 6, 32, 32))


def test_ffn_parameters_per_stream_and_gradients_reach_all_of_them():
    model = _ffn()
    shifted = [m for m in model.modules() if isinstance(m, ShiftedConv)]
    assert len(shifted) == sum(model.config.depths)
    for m in shifted:
        assert len(m.adaconvs) == 3
        for ada in m.adaconvs:
            assert ada.bias is None and ada.groups == ada.in_channels and ada.kernel_size == (1, 1)
            assert 0 < ada.weight.std() < 5e-3
    out = model(*(torch.randn(2, 3, t, 32, 32) for t in (4, 8, 16)))
    sum(o.logsumexp(-1).sum() for o in out).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_vanilla_tsm_has_one_stream_and_evaluates_any_frame_count():
    torch.manual_seed(0)
    tsm = build_model("tiny", num_classes=5, frame_counts=(16,))
    assert all(len(m.bns) == 1 for m in tsm.modules() if isinstance(m, StreamBatchNorm2d))
    assert all(m.adaconvs is None for m in tsm.modules() if isinstance(m, ShiftedConv))
    tsm.eval()
    for t in (4, 8, 16):
        assert tsm(torch.randn(2, 3, t, 32, 32)).shape == (2, 5)
    with pytest.raises(PolySpaceError, match="expected clips"):
        tsm(torch.randn(2, 4, 32, 32))


def test_resnet50_matches_torchvision_and_loads_imagenet_weights(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet50

    torch.manual_seed(0)
    reference = resnet50()
    for m in reference.modules():  # non-trivial BN statistics so the comparison means something
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "r50.pth")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "r50.safetensors"))
    num_source = len(reference.state_dict())
    reference.fc = nn.Identity()
    reference.eval()

    frames = torch.randn(2, 3, 64, 64)
    for name in ("r50.pth", "r50.safetensors"):
        model = build_model("resnet50", num_classes=7, frame_counts=(4, 8, 16), ffn=True, shift_div=0)
        counts = load_imagenet_weights(model, tmp_path / name)
        assert counts["source_tensors"] == num_source - 2  # all but fc.weight/bias
        model.eval()
        with torch.no_grad():  # with the alteration at exactly zero, each stream is plain ResNet-50
            for m in model.modules():
                if isinstance(m, ShiftedConv):
                    for ada in m.adaconvs:
                        ada.weight.zero_()
        for stream in range(3):
            assert torch.equal(model.layer3[2].bn2.bns[stream].running_var,
                               reference.layer3[2].bn2.running_var)
            with torch.no_grad():
                model._select(stream, 2)
                assert torch.allclose(model.frame_features(frames), reference(frames), rtol=1e-4, atol=1e-4)

    shifted = build_model("resnet50", num_classes=7, frame_counts=(16,))
    load_imagenet_weights(shifted, tmp_path / "r50.pth")
    shifted.eval()
    with torch.no_grad():
        shifted._select(0, 2)
        assert not torch.allclose(shifted.frame_features(frames), reference(frames), rtol=1e-2, atol=1e-3)

    with pytest.raises(PolySpaceError, match="r50.pth"):
        load_imagenet_weights(build_model("small", num_classes=7), tmp_path / "r50.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PolySpaceError, match="not a readable torch file"):
        load_imagenet_weights(shifted, tmp_path / "junk.pth")


def test_unknown_arch_is_an_error():
    with pytest.raises(PolySpaceError, match="--arch"):
        build_model("resnet7", num_classes=3)
