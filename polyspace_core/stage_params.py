"""Every notebook parameter, declared once with its type.

Values live in the flat preset files `params/<preset>.yaml`; the notebook's `parameters` cell
holds the `default` preset's values. A key may be used by several stages (e.g. `teachers`);
it then has one type everywhere. Type specs:

    bool, int, float, str, path, optional[path], optional[str], optional[int],
    list[str], list[int], list[float], choice:a|b|c, auto_bool (true, false or "auto")
"""

from __future__ import annotations

STAGES = [
    "01_featurize",
    "02_train_converters",
    "03_alignment",
    "04_train_fusion",
    "05_eval_downstream",
    "06_efficiency",
    "07_ffn_tfd",
    "08_colorization",
]

# Keys every notebook has.
COMMON: dict[str, str] = {
    "preset": "str",            # names the preset; outputs go to runs/<preset>/, reports/<preset>/
    "seed": "int",
    "device": "str",            # auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps
    "interactive": "auto_bool",  # widgets; auto = on in JupyterLab, off in headless runs
}

# Each stage's own keys. Add a stage's keys here, its values to params/default.yaml and
# params/smoke.yaml, and the same default values to the notebook's parameters cell.
STAGE_PARAMS: dict[str, dict[str, str]] = {
    "01_featurize": {},
    "02_train_converters": {},
    "03_alignment": {},
    "04_train_fusion": {
        "cached": "bool",       # True: feature store -> converters -> head; False: decode videos
    },
    "05_eval_downstream": {},
    "06_efficiency": {},
    "07_ffn_tfd": {},
    "08_colorization": {},
}


def stage_spec(stage: str) -> dict[str, str]:
    """Name -> type spec of every parameter the stage accepts (common keys first)."""
    from .errors import PolySpaceError

    if stage not in STAGE_PARAMS:
        raise PolySpaceError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return {**COMMON, **STAGE_PARAMS[stage]}


def all_params() -> dict[str, str]:
    """Every parameter of every stage; a key used by several stages must have one type."""
    merged: dict[str, str] = dict(COMMON)
    for stage, spec in STAGE_PARAMS.items():
        for name, kind in spec.items():
            if merged.setdefault(name, kind) != kind:
                raise TypeError(f"parameter {name!r} has type {merged[name]} elsewhere but {kind} in {stage}")
    return merged
