"""Generic measurements of one forward pass: FLOPs, parameters, latency, peak memory.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`: true floating-point operations, a
multiply-add counts 2 (so a (M, K) @ (K, N) matmul is 2·M·K·N), over matmuls, convolutions and
attention. Elementwise work (norms, activations, softmax, interpolation) is not counted; in a ViT
it is ~1% of the total. Multiply by 0.5 to compare with papers that quote "FLOPs" as MACs.

Attention is easy to lose: on CPU, `F.scaled_dot_product_attention` runs one fused kernel
(`_scaled_dot_product_flash_attention_for_cpu`) and `nn.MultiheadAttention` in eval/no-grad mode
runs `_native_multi_head_attention`; FlopCounterMode has no formula for either and counts them as
zero. `count_flops` registers formulas for both (the same arithmetic as the math path: Q·Kᵀ and
attention·V, plus the projections inside the native MHA op), so a model is counted the same
whichever attention implementation it uses. The transformers backbones are additionally built
with eager attention (catalog.py), where Q·Kᵀ and attention·V are plain batched matmuls.

Latency is the median of `repeats` timed calls after `warmup` untimed ones (CUDA synchronised
around each call). Peak memory is the tensor memory one call allocates on top of what was already
there (weights and inputs excluded): CUDA `max_memory_allocated`; on CPU (and MPS) the peak of live
tensor storage allocated by the call's ops, tracked by a dispatch mode — deterministic, unlike the
process RSS, which glibc's heap reuse makes depend on what ran before. Each result records the
method that produced it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import PolySpaceError

aten = torch.ops.aten


# ---------------------------------------------------------------------------------------------
# FLOPs


def _prod(values) -> int:
    return int(math.prod(int(v) for v in values))


def _sdpa_kernel_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Fused SDPA kernels without a torch formula: Q·Kᵀ (2·L_q·L_k·E) + attn·V (2·L_q·L_k·E_v)
    per batch·head. query (..., L_q, E), key (..., L_k, E), value (..., L_k, E_v)."""
    batch = _prod(query_shape[:-2])
    lq, e = int(query_shape[-2]), int(query_shape[-1])
    lk, ev = int(key_shape[-2]), int(value_shape[-1])
    return 2 * batch * lq * lk * e + 2 * batch * lq * lk * ev


def _native_mha_flops(query_shape, key_shape, value_shape, embed_dim, num_heads, *args,
                      out_shape=None, **kwargs) -> int:
    """`nn.MultiheadAttention`'s fused eval path: Q/K/V in-projections, Q·Kᵀ, attn·V and the
    out-projection. query (B, L_q, E) or (L_q, E), key/value (B, L_k, E)."""
    batch = _prod(query_shape[:-2])
    lq, lk, e = int(query_shape[-2]), int(key_shape[-2]), int(embed_dim)
    projections = 2 * batch * (lq + 2 * lk) * e * e + 2 * batch * lq * e * e
    attention = 4 * batch * lq * lk * e
    return projections + attention


def _extra_formulas() -> dict[Any, Callable]:
    """Ops FlopCounterMode counts as zero that a forward pass on CPU/MPS really runs."""
    formulas: dict[Any, Callable] = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math_for_mps",
                 "_scaled_dot_product_fused_attention_overrideable"):
        if hasattr(aten, name):  # present in this torch build; absent ones cannot be dispatched anyway
            formulas[getattr(aten, name)] = _sdpa_kernel_flops
    if hasattr(aten, "_native_multi_head_attention"):
        formulas[aten._native_multi_head_attention] = _native_mha_flops
    return formulas


# ops whose FLOPs are attention (scores and weighted values); the rest are projections/convs
ATTENTION_OPS = ("aten.bmm", "aten.baddbmm", "aten._scaled_dot_product_flash_attention_for_cpu",
                 "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_flash_attention",
                 "aten._scaled_dot_product_cudnn_attention", "aten._scaled_dot_product_attention_math_for_mps",
                 "aten._scaled_dot_product_fused_attention_overrideable", "aten._flash_attention_forward",
                 "aten._efficient_attention_forward")


@dataclass
class FlopCount:
    """FLOPs of one call: the total, per aten op (e.g. 'aten.addmm') and per direct submodule."""

    total: int
    by_op: dict[str, int]
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    @property
    def attention(self) -> int:
        """FLOPs of batched matmuls and fused attention kernels: Q·Kᵀ and attention·V in a
        transformer (the linear layers run as mm/addmm). The native MHA op is not included: it
        fuses projections with attention."""
        return sum(v for k, v in self.by_op.items() if k in ATTENTION_OPS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _forward_only_tracker():
    """FlopCounterMode's ModuleTracker (which attributes FLOPs to modules) also hooks the backward
    pass of every module input that requires grad. Under no_grad, a view of a parameter (e.g.
    `self.latents.expand(b, -1, -1)` passed to a submodule) requires grad but has no grad_fn, and
    that hook registration fails. We count forward passes only, so the tracker sees detached
    aliases; the module's own inputs are untouched (the hooks return None)."""
    from torch.utils._pytree import tree_map_only
    from torch.utils.module_tracker import ModuleTracker

    def detached(tree):
        return tree_map_only(torch.Tensor, lambda t: t.detach(), tree)

    class ForwardOnlyTracker(ModuleTracker):
        def _fw_pre_hook(self, mod, input) -> None:
            super()._fw_pre_hook(mod, detached(input))

        def _fw_post_hook(self, mod, input, output) -> None:
            super()._fw_post_hook(mod, input, detached(output))

    return ForwardOnlyTracker()


def count_flops(fn: Callable[..., Any] | nn.Module, *args: Any, **kwargs: Any) -> FlopCount:
    """FLOPs of `fn(*args, **kwargs)` under no_grad (2 per multiply-add; see the module docstring).

    Works with meta tensors (a model built under `torch.device("meta")` and meta inputs): nothing
    is computed or allocated, so multi-billion-parameter models are counted in seconds.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=2, custom_mapping=_extra_formulas())
    counter.mod_tracker = _forward_only_tracker()
    with torch.no_grad(), counter:
        fn(*args, **kwargs)
    counts = counter.get_flop_counts()
    by_op = {str(op): int(v) for op, v in counts.get("Global", {}).items()}
    by_module: dict[str, int] = {}
    for name, ops in counts.items():
        if name.count(".") == 1:  # '<Root>.<child>': the direct submodules of a module
            by_module[name.split(".", 1)[1]] = int(sum(ops.values()))
    return FlopCount(total=int(counter.get_total_flops()), by_op=by_op, by_module=by_module)


def vit_layer_flops(tokens: int, width: int, mlp_hidden: int, batch: int = 1) -> dict[str, int]:
    """Analytic FLOPs (2 per multiply-add) of one pre-norm ViT encoder layer on `tokens` tokens:
    QKV projections, attention scores Q·Kᵀ, attention-weighted values, output projection, MLP.
    Norms, softmax, activations and biases are not counted (FlopCounterMode does not either)."""
    n, d, m = tokens * batch, width, mlp_hidden
    parts = {
        "qkv": 2 * n * d * 3 * d,
        "scores": 2 * batch * tokens * tokens * d,
        "weighted_values": 2 * batch * tokens * tokens * d,
        "out_proj": 2 * n * d * d,
        "mlp": 2 * n * d * m * 2,
    }
    parts["total"] = sum(parts.values())
    return parts


# ---------------------------------------------------------------------------------------------
# parameters


def count_parameters(module: nn.Module, *, exclude_prefixes: tuple[str, ...] = (),
                     include_buffers: bool = False) -> int:
    """Number of parameter elements of `module`, skipping names that start with any of
    `exclude_prefixes` (e.g. V-JEPA 2's 'predictor.', which the encoder-only path never runs).
    With `include_buffers`, floating-point buffers count too (a Procrustes converter's map lives
    in buffers). Works on meta modules."""
    total = sum(p.numel() for n, p in module.named_parameters() if not n.startswith(exclude_prefixes))
    if include_buffers:
        total += sum(b.numel() for n, b in module.named_buffers()
                     if b.is_floating_point() and not n.startswith(exclude_prefixes))
    return int(total)


# ---------------------------------------------------------------------------------------------
# latency


@dataclass
class Latency:
    """Wall-clock time of one call in milliseconds: median, min and max over `repeats` timed calls."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_latency(fn: Callable[[], Any], device: torch.device | str = "cpu", *, warmup: int = 1,
                    repeats: int = 5) -> Latency:
    """Median latency of `fn()` (no arguments; close over the inputs) after `warmup` untimed calls.
    Runs under no_grad; the device is synchronised before and after each timed call."""
    device = torch.device(device)
    if repeats < 1 or warmup < 0:
        raise PolySpaceError(f"latency: repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    return Latency(median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times),
                   repeats=repeats, warmup=warmup, device=str(device))


# ---------------------------------------------------------------------------------------------
# peak memory


@dataclass
class MemoryPeak:
    """Extra memory one call needed at its peak, in bytes, and how it was measured."""

    peak_bytes: int
    method: str

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


class _LiveTensorBytes:
    """Peak bytes of tensor storage allocated by torch ops while active (any device).

    A dispatch mode sees every op's outputs; an output whose storage is not shared with one of
    the op's inputs is a new allocation and is counted until its storage is freed (a weakref
    finalizer on the storage; torch keeps one Python object per storage). Views and in-place
    results share an input's storage and are not counted again; tensors that existed before
    (weights, inputs) are never counted."""

    def __init__(self) -> None:
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def mode(self):
        import weakref

        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self

        def storages(tree):
            return [t.untyped_storage() for t in tree_flatten(tree)[0]
                    if isinstance(t, torch.Tensor) and t.device.type != "meta"]

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                inputs = {s._cdata for s in storages((args, kwargs))}
                for storage in storages(out):
                    key = storage._cdata
                    if key in inputs or key in tracker.live:
                        continue
                    tracker.live[key] = storage.nbytes()
                    tracker.current += tracker.live[key]
                    tracker.peak = max(tracker.peak, tracker.current)
                    weakref.finalize(storage, tracker._free, key)
                return out

        return Mode()


def measure_peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> MemoryPeak:
    """Extra memory `fn()` needs at its peak on `device`, beyond what was allocated before the call
    (weights and inputs already there are not included). CUDA: the caching allocator's
    max_memory_allocated; other devices: the peak of live tensor storage allocated by the call's
    ops (`_LiveTensorBytes`). Both count tensors, not allocator caches or library scratch space."""
    import gc

    device = torch.device(device)
    gc.collect()
    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            fn()
            torch.cuda.synchronize(device)
            return MemoryPeak(torch.cuda.max_memory_allocated(device) - before, "cuda max_memory_allocated")
        tracker = _LiveTensorBytes()
        with tracker.mode():
            fn()
        return MemoryPeak(tracker.peak, "peak live tensor bytes (dispatch-mode tracker)")


# ---------------------------------------------------------------------------------------------
# everything for one module


@dataclass
class Measurement:
    """One component on one input: FLOPs, parameters and (when measured) latency and peak memory."""

    name: str
    flops: int
    params: int
    latency: Latency | None = None
    memory: MemoryPeak | None = None
    flops_by_op: dict[str, int] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def latency_ms(self) -> float | None:
        return None if self.latency is None else self.latency.median_ms

    @property
    def peak_memory_mb(self) -> float | None:
        return None if self.memory is None else self.memory.peak_mb

    def row(self) -> dict[str, Any]:
        """A flat table row."""
        return {"name": self.name, "gflops": self.gflops, "params_m": self.params / 1e6,
                "latency_ms": self.latency_ms, "peak_memory_mb": self.peak_memory_mb,
                "memory_method": None if self.memory is None else self.memory.method, **self.spec}


def measure(name: str, fn: Callable[[], Any], params: int, device: torch.device | str = "cpu", *,
            latency: bool = True, warmup: int = 1, repeats: int = 5,
            spec: Mapping[str, Any] | None = None) -> Measurement:
    """FLOPs, latency and peak memory of `fn()` (a closure over a module and its inputs) plus the
    given parameter count. With `latency=False` only FLOPs are taken (e.g. meta-device models)."""
    flops = count_flops(fn)
    result = Measurement(name=name, flops=flops.total, params=int(params), flops_by_op=flops.by_op,
                         spec=dict(spec or {}))
    if latency:
        result.memory = measure_peak_memory(fn, device)
        result.latency = measure_latency(fn, device, warmup=warmup, repeats=repeats)
    return result
