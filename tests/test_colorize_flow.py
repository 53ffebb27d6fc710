"""Flow backends, warping, forward-backward confidence, RAFT/MemFlow loading and their errors."""

import textwrap

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from polyspace_core.colorize.flow import (
    CachedFlow,
    DISFlow,
    FarnebackFlow,
    MemFlowAdapter,
    RAFTFlow,
    build_flow_backend,
    flow_to_tensor,
    forward_backward_confidence,
    warp,
)
from polyspace_core.errors import PolySpaceError


def _shifted_pair(dx=3, dy=-2, size=96):
    img = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)  # moved(x) = img(x - d)
    return img, moved


@pytest.mark.parametrize("backend", [DISFlow(), FarnebackFlow()], ids=["dis", "farneback"])
def test_backends_recover_a_translation(backend):
    img, moved = _shifted_pair(3, -2)
    flow = backend.flow(moved, img)  # moved(x) ~ img(x + flow): flow ~ (-3, +2)
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    np.testing.assert_allclose(np.median(inner, axis=0), [-3.0, 2.0], atol=0.25)


def test_warp_integer_shift_is_exact_and_marks_outside():
    x = torch.arange(2 * 1 * 6 * 7, dtype=torch.float32).view(2, 1, 6, 7)
    flow = torch.zeros(2, 2, 6, 7)
    flow[:, 0] = 2.0  # sample two pixels to the right
    out, inside = warp(x, flow)
    torch.testing.assert_close(out[..., :5], x[..., 2:])
    assert inside[..., :5].eq(1).all() and inside[..., 5:].eq(0).all()
    assert out[..., 5:].abs().max() == 0  # nothing to sample outside the frame


def test_warp_is_differentiable_in_the_input():
    x = torch.rand(1, 2, 5, 5, requires_grad=True)
    out, _ = warp(x, torch.full((1, 2, 5, 5), 0.5))
    out.sum().backward()
    assert x.grad.abs().sum() > 0


def test_confidence_high_for_consistent_flow_low_for_occlusion():
    h, w = 32, 32
    fw = torch.zeros(1, 2, h, w)
    fw[:, 0] = 2.0
    bw = -fw.clone()
    conf = forward_backward_confidence(bw, fw)
    assert conf[..., 2:].min() > 0.99            # consistent cycle
    assert conf[..., :2].max() == 0              # points leaving the frame
    bad = bw.clone()
    bad[..., 10:20, 10:20] = 6.0                 # a region whose match does not come back
    conf_bad = forward_backward_confidence(bad, fw)
    assert conf_bad[..., 12:18, 12:18].max() < 0.05


def test_cached_flow_returns_the_same_flow_without_recomputing():
    img, moved = _shifted_pair()
    cached = CachedFlow(DISFlow())
    a = cached.flow(moved, img)
    b = cached.flow(moved, img)
    assert cached.hits == 1 and cached.misses == 1 and a is b
    cached.flow(img, moved)
    assert cached.misses == 2


def test_raft_loads_local_weights_and_gives_flow(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    backend = build_flow_backend("raft", raft_weights=str(path))
    img, moved = _shifted_pair(size=60)  # not a multiple of 8: padded inside
    flow = backend.flow(moved, img)
    assert flow.shape == (60, 60, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


def test_raft_errors_name_the_file(tmp_path):
    with pytest.raises(PolySpaceError, match="not found"):
        RAFTFlow(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(PolySpaceError, match="do not fit"):
        RAFTFlow(wrong)


def test_unknown_backend_and_bad_frames():
    with pytest.raises(PolySpaceError, match="unknown"):
        build_flow_backend("pwcnet")
    with pytest.raises(PolySpaceError, match="uint8"):
        DISFlow().flow(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))
    with pytest.raises(PolySpaceError, match="differ in size"):
        DISFlow().flow(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))


def test_memflow_missing_checkout_or_checkpoint(tmp_path):
    with pytest.raises(PolySpaceError, match="MemFlow checkout"):
        build_flow_backend("memflow", memflow_path=str(tmp_path / "MemFlow"), memflow_ckpt="x.pth")
    (tmp_path / "MemFlow" / "core" / "Networks").mkdir(parents=True)
    with pytest.raises(PolySpaceError, match="checkpoint"):
        build_flow_backend("memflow", memflow_path=str(tmp_path / "MemFlow"), memflow_ckpt=str(tmp_path / "none.pth"))


def test_memflow_adapter_drives_a_checkout_like_inference_py(tmp_path):
    """A stand-in checkout with MemFlow's module layout and call signatures (build_network,
    get_cfg, InferenceCore.step): the adapter must import from the path, load the checkpoint,
    feed (1, 2, 3, H, W) frames in [-1, 1] padded to /8, and unpad the flow it gets back."""
    root = tmp_path / "MemFlow"
    for d in ("core/Networks", "configs", "inference"):
        (root / d).mkdir(parents=True)
    (root / "core" / "__init__.py").write_text("")
    (root / "core" / "Networks" / "__init__.py").write_text(textwrap.dedent("""
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = torch.nn.Parameter(torch.zeros(1))
        def build_network(cfg):
            return Net()
    """))
    (root / "configs" / "__init__.py").write_text("")
    (root / "configs" / "sintel_memflownet.py").write_text("def get_cfg():\n    return {'rope': False}\n")
    (root / "inference" / "__init__.py").write_text("")
    (root / "inference" / "inference_core_skflow.py").write_text(textwrap.dedent("""
        import torch
        class InferenceCore:
            def __init__(self, network, config):
                self.model = network
            def step(self, images, end=False, add_pe=False, flow_init=None):
                assert images.shape[:3] == (1, 2, 3) and images.shape[-1] % 8 == 0 and images.shape[-2] % 8 == 0
                assert images.min() >= -1 and images.max() <= 1
                # 'flow' = scale * (second - first) in x, and the mean of the first image in y
                dx = self.model.scale * (images[0, 1, 0] - images[0, 0, 0])
                dy = images[0, 0, 0].mean().expand_as(dx)
                flow = torch.stack([dx, dy])[None]
                return flow[:, :, ::8, ::8], flow
    """))
    ckpt = tmp_path / "memflow.pth"
    torch.save({"model": {"module.scale": torch.tensor([2.0])}}, ckpt)
    backend = MemFlowAdapter(root, ckpt)
    a = np.full((20, 28), 0, np.uint8)
    b = np.full((20, 28), 255, np.uint8)
    flow = backend.flow(a, b)
    assert flow.shape == (20, 28, 2)
    np.testing.assert_allclose(flow[..., 0], 4.0)   # scale 2 loaded from the 'module.'-prefixed ckpt
    np.testing.assert_allclose(flow[..., 1], -1.0, atol=1e-6)


def test_flow_to_tensor_layout():
    flows = [np.stack([np.full((3, 4), 1.0), np.full((3, 4), 2.0)], -1).astype(np.float32)] * 2
    t = flow_to_tensor(flows)
    assert t.shape == (2, 2, 3, 4) and t[:, 0].eq(1).all() and t[:, 1].eq(2).all()
