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


def test_dis_flow_does_not_depend_on_earlier_calls():
    """OpenCV's DIS object answers a pair differently after its first call; each pair is fresh."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 40), dtype=np.uint8)
    b = np.roll(a, 2, axis=1)
    dis = DISFlow()
    first = dis.flow(a, b)
    dis.flow(rng.integers(0, 256, (32, 40), dtype=np.uint8), a)
    np.testing.assert_array_equal(dis.flow(a, b), first)


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


def _fake_memflow(tmp_path):
    """A stand-in checkout with MemFlow's module layout and call signatures, as read from
    github.com/DQiaole/MemFlow: core/Networks/__init__.py build_network(cfg) -> network(cfg[cfg.network]);
    configs/sintel_memflownet.py get_cfg() -> a yacs CfgNode (a dict with attribute access) with
    network, mem_every, enable_long_term, val_decoder_depth; inference/inference_core_skflow.py
    InferenceCore(network, config) with clear_memory() and step(images, end, add_pe, flow_init) ->
    (flow_low, flow_up), which adds to its memory when curr_ti - last_mem_ti >= mem_every and not
    end, as the real one does. The model has the released model's top-level parts (cnet, fnet,
    update_block, att), tiny. Its 'flow': x = att.weight[0, 0] * (second - first) of channel 0,
    y = how many memory entries the step read (so the tests see the memory)."""
    root = tmp_path / "MemFlow"
    for d in ("core/Networks", "configs", "inference"):
        (root / d).mkdir(parents=True)
    (root / "core" / "__init__.py").write_text("")
    (root / "core" / "Networks" / "__init__.py").write_text(textwrap.dedent("""
        import torch
        class MemFlowNet(torch.nn.Module):
            def __init__(self, cfg):
                super().__init__()
                self.cnet = torch.nn.Conv2d(3, 4, 1)
                self.fnet = torch.nn.Conv2d(3, 4, 1)
                self.update_block = torch.nn.Linear(2, 2)
                self.att = torch.nn.Linear(2, 2, bias=False)
        def build_network(cfg):
            return MemFlowNet(cfg[cfg.network])
    """))
    (root / "configs" / "__init__.py").write_text("")
    (root / "configs" / "sintel_memflownet.py").write_text(textwrap.dedent("""
        class CfgNode(dict):
            def __getattr__(self, key):
                return self[key]
        def get_cfg():
            cfg = CfgNode(network="MemFlowNet_skflow", mem_every=1, enable_long_term=False, val_decoder_depth=15)
            cfg["MemFlowNet_skflow"] = CfgNode(cnet="basicencoder", fnet="basicencoder")
            return cfg
    """))
    (root / "inference" / "__init__.py").write_text("")
    (root / "inference" / "inference_core_skflow.py").write_text(textwrap.dedent("""
        import torch
        class InferenceCore:
            def __init__(self, network, config):
                self.model = network
                self.mem_every = config["mem_every"]
                self.clear_memory()
            def clear_memory(self):
                self.curr_ti = -1
                self.last_mem_ti = -self.mem_every
                self.memory = []
            def step(self, images, end=False, add_pe=False, flow_init=None):
                assert images.shape[:3] == (1, 2, 3) and images.shape[-1] % 8 == 0 and images.shape[-2] % 8 == 0
                assert images.min() >= -1 and images.max() <= 1 and flow_init is None
                self.curr_ti += 1
                is_mem_frame = (self.curr_ti - self.last_mem_ti >= self.mem_every) and not end
                dx = self.model.att.weight[0, 0] * (images[0, 1, 0] - images[0, 0, 0])
                dy = torch.full_like(dx, float(len(self.memory)))
                if is_mem_frame:
                    self.memory.append(images[0, 0].mean())
                    self.last_mem_ti = self.curr_ti
                flow = torch.stack([dx, dy])[None]
                return flow[:, :, ::8, ::8], flow
    """))
    return root


def _released_memflow_state(scale: float = 2.0) -> dict:
    torch.manual_seed(0)
    state = {"cnet.weight": torch.randn(4, 3, 1, 1), "cnet.bias": torch.zeros(4),
             "fnet.weight": torch.randn(4, 3, 1, 1), "fnet.bias": torch.zeros(4),
             "update_block.weight": torch.randn(2, 2), "update_block.bias": torch.zeros(2),
             "att.weight": torch.tensor([[scale, 0.0], [0.0, 1.0]])}
    return state


def test_memflow_adapter_loads_the_released_layout_and_runs_two_frame_pairs(tmp_path):
    root = _fake_memflow(tmp_path)
    # the released files as inference.py reads them: {"model": {"module." + key}} or a bare state dict
    wrapped, bare = tmp_path / "MemFlowNet_sintel.pth", tmp_path / "bare.pth"
    torch.save({"model": {f"module.{k}": v for k, v in _released_memflow_state().items()}}, wrapped)
    torch.save(_released_memflow_state(3.0), bare)
    backend = MemFlowAdapter(root, wrapped)
    torch.testing.assert_close(backend.model.cnet.weight, _released_memflow_state()["cnet.weight"])
    a, b = np.full((20, 28), 0, np.uint8), np.full((20, 28), 255, np.uint8)
    flow = backend.flow(a, b)
    assert flow.shape == (20, 28, 2)                    # padded to /8 for MemFlow, cropped back
    np.testing.assert_allclose(flow[..., 0], 4.0)      # att.weight[0, 0] = 2 loaded from the file
    np.testing.assert_allclose(flow[..., 1], 0.0)      # a fresh core: nothing in memory
    np.testing.assert_allclose(MemFlowAdapter(root, bare).flow(a, b)[..., 0], 6.0)


def test_memflow_memory_is_carried_across_the_sequence_and_reset(tmp_path):
    root = _fake_memflow(tmp_path)
    ckpt = tmp_path / "memflow.pth"
    torch.save(_released_memflow_state(), ckpt)
    backend = MemFlowAdapter(root, ckpt)
    frames = [np.full((16, 24), v, np.uint8) for v in (10, 60, 110, 160)]
    read = [backend.sequence_flows(p, c)[1][0, 0, 1] for p, c in zip(frames, frames[1:])]
    assert read == [0.0, 1.0, 2.0]            # each step reads what the earlier steps stored
    back, fwd = backend.sequence_flows(frames[0], frames[1], stream=1)
    assert back[0, 0, 1] == fwd[0, 0, 1] == 0.0   # another sequence of the batch: its own memory
    assert backend.flow(frames[0], frames[1])[0, 0, 1] == 0.0   # non-consecutive pairs: no memory
    backend.reset()
    assert backend.sequence_flows(frames[0], frames[1])[1][0, 0, 1] == 0.0


def test_the_temporal_branch_reads_memflow_memory_and_reset_memory_clears_it(tmp_path):
    from polyspace_core.colorize.exemplar import build_exemplar_branch
    from polyspace_core.colorize.propagation import TemporalPropagator, propagate_sequence
    from polyspace_core.colorize.system import FusionSystem

    root = _fake_memflow(tmp_path)
    ckpt = tmp_path / "memflow.pth"
    torch.save(_released_memflow_state(), ckpt)
    backend = MemFlowAdapter(root, ckpt)
    grays = np.stack([np.stack([np.full((16, 24), 40 * t + 10 * b, np.uint8) for t in range(4)]) for b in range(2)])
    propagate_sequence(TemporalPropagator(backend, memory_size=2), grays, grays[:, 0], torch.zeros(2, 2, 16, 24))
    # frame 0 is matched to the reference (two-frame MemFlow); frames 1..3 step each sequence's cores
    assert sorted(backend._streams) == [0, 1]
    assert all(len(core.memory) == 3 for cores in backend._streams.values() for core in cores)
    system = FusionSystem(build_exemplar_branch(), flow=backend)
    system.reset_memory()
    assert backend._streams == {}


def test_memflow_checkpoint_of_another_layout_is_one_line(tmp_path):
    root = _fake_memflow(tmp_path)
    raft_like = tmp_path / "raft-things.pth"
    torch.save({"fnet.conv1.weight": torch.zeros(64, 3, 7, 7), "update_block.mask.0.weight": torch.zeros(1)},
               raft_like)
    with pytest.raises(PolySpaceError) as error:
        MemFlowAdapter(root, raft_like)
    message = str(error.value)
    assert "\n" not in message and str(raft_like) in message and "MemFlow" in message


def test_flow_to_tensor_layout():
    flows = [np.stack([np.full((3, 4), 1.0), np.full((3, 4), 2.0)], -1).astype(np.float32)] * 2
    t = flow_to_tensor(flows)
    assert t.shape == (2, 2, 3, 4) and t[:, 0].eq(1).all() and t[:, 1].eq(2).all()
