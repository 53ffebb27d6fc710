"""Cost of each piece a prediction runs through besides the backbones: converters, heads, TSM/FFN,
colorization (the backbones' cost is backbones/catalog.py's backbone_cost).

Every function returns a `measure.Measurement` (FLOPs per clip or frame, parameters, and — when
asked — median latency and peak extra memory on the given device). Small components are counted
on the device directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..measure import Measurement, count_flops, count_parameters, measure, measure_latency, measure_peak_memory


def _converter(config_fields: Mapping[str, Any], student: tuple[int, int], teacher: tuple[int, int],
               device: torch.device) -> nn.Module:
    """A converter student (T_s, D_s) -> teacher (T_t, D_t); closed-form kinds are fitted on random
    pairs (their cost does not depend on the fitted values)."""
    from ..align.converters import ConverterConfig, build_converter

    # the shapes (and so the token grids) are this pipeline's, not those the settings were saved with
    fields = {k: v for k, v in config_fields.items()
              if k not in ("d_in", "d_out", "t_in", "t_out", "grid_in", "grid_out")}
    config = ConverterConfig(d_in=student[1], d_out=teacher[1], t_in=student[0], t_out=teacher[0], **fields)
    converter = build_converter(config).to(device).eval()
    if converter.closed_form:
        n = max(8, (student[1] + teacher[0] - 1) // teacher[0] + 2)  # enough token pairs for a full-rank fit
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(n, *student, generator=generator).to(device)
        y = torch.randn(n, *teacher, generator=generator).to(device)
        converter.fit(x, y)
    return converter


def converter_cost(name: str, config_fields: Mapping[str, Any], student: tuple[int, int],
                   teacher: tuple[int, int], device: torch.device | str = "cpu", *, latency: bool = True,
                   warmup: int = 2, repeats: int = 10) -> Measurement:
    """One clip's token features (1, T_s, D_s) through a converter into a teacher space (T_t, D_t).
    Parameters include fitted buffers (a Procrustes map is its buffers)."""
    device = torch.device(device)
    converter = _converter(config_fields, student, teacher, device)
    x = torch.randn(1, *student, device=device)
    params = count_parameters(converter, include_buffers=True)
    info = {"kind": "converter", "converter": converter.config.kind, "student_shape": list(student),
            "teacher_shape": list(teacher)}
    return measure(name, lambda: converter(x), params, device, latency=latency, warmup=warmup,
                   repeats=repeats, spec=info)


def fusion_head_config(student: str, student_shape: tuple[int, int], teachers: Sequence[str],
                       teacher_shapes: Sequence[tuple[int, int]], num_classes: int,
                       head: Mapping[str, Any] | None = None):
    """The FusionConfig of a head over these feature shapes (`head`: rank, gate_hidden, pooling, ...)."""
    from ..fusion.head import FusionConfig

    keep = {k: v for k, v in dict(head or {}).items() if k in ("rank", "gate_hidden", "pooling", "dropout", "gate_l1")}
    return FusionConfig(student=student, student_dim=int(student_shape[1]), student_tokens=int(student_shape[0]),
                        teachers=list(teachers), teacher_dims=[int(s[1]) for s in teacher_shapes],
                        teacher_tokens=[int(s[0]) for s in teacher_shapes], num_classes=int(num_classes), **keep)


def fusion_head_cost(name: str, config, device: torch.device | str = "cpu", *, latency: bool = True,
                     warmup: int = 2, repeats: int = 10) -> Measurement:
    """The residual-gated fusion head on one clip: student tokens + N teacher-space features -> logits.
    The same cost whether the N inputs are converted features or the teachers' own (05's oracle)."""
    from ..fusion.head import FusionHead

    device = torch.device(device)
    head = FusionHead(config).to(device).eval()
    z0 = torch.randn(1, config.student_tokens, config.student_dim, device=device)
    others = [torch.randn(1, t, d, device=device) for t, d in zip(config.teacher_tokens, config.teacher_dims)]
    info = {"kind": "fusion_head", "rank": config.rank, "gate_hidden": config.gate_hidden,
            "pooling": config.pooling, "teachers": len(config.teachers)}
    return measure(name, lambda: head(z0, others), count_parameters(head), device, latency=latency,
                   warmup=warmup, repeats=repeats, spec=info)


def student_head_cost(name: str, config, target_params: int | None = None, device: torch.device | str = "cpu", *,
                      latency: bool = True, warmup: int = 2, repeats: int = 10) -> Measurement:
    """The student-only head on one clip. With `target_params` it is the parameter-matched head of
    fusion/head.py (`matched_student_head`: as many trainable parameters as the fusion pipeline);
    otherwise a plain StudentHead with the fusion config's pooling."""
    from ..fusion.head import StudentHead, StudentHeadConfig, matched_student_head

    device = torch.device(device)
    if target_params is not None:
        head = matched_student_head(int(target_params), config.student, config.student_dim, config.student_tokens,
                                    config.num_classes, pooling=config.pooling)
    else:
        head = StudentHead(StudentHeadConfig(config.student, config.student_dim, config.student_tokens,
                                             config.num_classes, pooling=config.pooling))
    head = head.to(device).eval()
    batch = {config.student: torch.randn(1, config.student_tokens, config.student_dim, device=device)}
    info = {"kind": "student_head", "hidden": head.config.hidden, "pooling": head.config.pooling}
    return measure(name, lambda: head(batch), count_parameters(head), device, latency=latency,
                   warmup=warmup, repeats=repeats, spec=info)


def tsm_cost(arch: str = "resnet50", frames: int = 16, size: int = 224, *, ffn: bool = False,
             frame_counts: Sequence[int] = (4, 8, 16), num_classes: int = 174,
             device: torch.device | str = "cpu", latency: bool = False, warmup: int = 1,
             repeats: int = 3) -> Measurement:
    """One clip of `frames` frames at size² through a TSM ResNet (ffn=False: the vanilla one-stream
    model trained at max(frame_counts)) or an FFN model (one stream per frame count, adaconv).
    Without `latency` it is counted on the meta device (no activations are allocated)."""
    from ..ffn.tsm_resnet import build_model

    counts = tuple(frame_counts) if ffn else (max(frame_counts),)
    name = f"{'ffn' if ffn else 'tsm'}_{'r50' if arch == 'resnet50' else arch}_{frames}f"
    model = build_model(arch, num_classes, frame_counts=counts, ffn=ffn).eval()
    params = count_parameters(model)
    info = {"kind": "tsm", "arch": arch, "ffn": ffn, "frames": frames, "size": size,
            "streams": list(counts), "num_classes": num_classes}
    device = torch.device(device) if latency else torch.device("meta")
    model = model.to(device)
    clip = torch.randn(1, 3, frames, size, size, device=device)
    return measure(name, lambda: model(clip), params, device, latency=latency, warmup=warmup,
                   repeats=repeats, spec=info)


def colorization_cost(size: int = 256, chunk: int = 8, device: torch.device | str = "cpu", *,
                      checkpoint: str | None = None, latency: bool = True, warmup: int = 1,
                      repeats: int = 3) -> Measurement:
    """Per-frame cost of the FusionSystem (temporal branch + exemplar branch + fusion UNet) at
    size², in steady state: the memory is filled by one chunk first, then a chunk of `chunk`
    frames is measured (its reference encoding included) and divided by `chunk`.

    FLOPs cover the torch parts (exemplar embedding, correspondence, colour net, fusion UNet,
    warping); the OpenCV optical flow of the temporal branch is not a torch op and is not in the
    FLOPs, but it is in the latency. `checkpoint`: a FusionSystem folder (else a fresh system with
    the default configuration, which has the same cost)."""
    from ..colorize.exemplar import build_exemplar_branch
    from ..colorize.system import FusionSystem

    device = torch.device(device)
    system = (FusionSystem.from_pretrained(checkpoint, map_location=device) if checkpoint
              else FusionSystem(build_exemplar_branch())).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    lab = torch.cat([torch.rand(1, chunk, 1, size, size, generator=generator) * 100,
                     (torch.rand(1, chunk, 2, size, size, generator=generator) - 0.5) * 60], dim=2).to(device)
    reference = (torch.rand(1, size, size, 3, generator=generator) * 255).to(torch.uint8)

    def run():
        return system.forward_sequence(lab, references=reference)

    with torch.no_grad():
        system.reset_memory()
        run()  # fill the memory: every measured frame sees a full memory, as in a long video
    flops = count_flops(run)
    per_frame = flops.total // chunk
    info = {"kind": "colorization", "size": size, "chunk": chunk, "per": "frame",
            "flow": system.propagator.backend.describe().get("name", type(system.propagator.backend).__name__),
            "flow_in_flops": False}
    result = Measurement("colorization_system", per_frame, count_parameters(system),
                         flops_by_op={k: v // chunk for k, v in flops.by_op.items()}, spec=info)
    if latency:
        mem = measure_peak_memory(run, device)
        lat = measure_latency(run, device, warmup=warmup, repeats=repeats)
        lat.median_ms, lat.min_ms, lat.max_ms = lat.median_ms / chunk, lat.min_ms / chunk, lat.max_ms / chunk
        result.latency, result.memory = lat, mem
    return result
