"""The workspace a notebook opens: project root, validated params, seeding, provenance, run dirs.

A notebook's second cell is

    from polyspace_core.workspace import open_stage
    ws = open_stage("04_train_fusion", globals())
    ws

`open_stage` reads the parameter values the notebook holds (its `parameters` cell, plus whatever
papermill injected after it), resolves the preset, coerces every value to its declared type
(`stage_params.py`), seeds, and shows the result. Precedence, lowest first:

    notebook defaults (= params/default.yaml)  <  params/<preset>.yaml  <  explicit overrides

where the preset is the notebook's `preset` value, or, when that was left at "default", the
POLYSPACE_PRESET environment variable (how `make lab PRESET=smoke` and the nbval tests pick a
preset without editing the notebook). A value counts as an explicit override when it differs from
the default preset's value (papermill `-p`, or an edit in JupyterLab), or when POLYSPACE_EXPLICIT
names it (comma-separated names; a sweep sets it, so a point's value wins even where it equals the
default preset's). Everything resolves against the project root, so a notebook runs the same from
notebooks/, the root, or any other cwd.

Outputs go to runs/<preset>/<stage>/ and reports/<preset>/<stage>/. POLYSPACE_OUTPUTS=<sub>
(a relative folder; `polyspace sweep` sets it per point) moves this stage's own outputs to
runs/<preset>/<sub>/<stage>/ and reports/<preset>/<sub>/<stage>/; the stages it reads from stay
where they are, so a point reuses the preset's upstream outputs and never replaces them.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from .errors import PolySpaceError
from .io import atomic_write_json
from .paths import project_root
from .provenance import provenance
from .stage_params import REPORT_KEYS, STAGES, all_params, stage_spec

# names IPython puts in a notebook's namespace; never parameters
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_PLAIN_TYPES = (str, int, float, bool, type(None), list, tuple, Path)
PRESET_ENV = "POLYSPACE_PRESET"
EXPLICIT_ENV = "POLYSPACE_EXPLICIT"
OUTPUTS_ENV = "POLYSPACE_OUTPUTS"


# ----------------------------------------------------------------------------- coercion

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


def _accepts(spec: str) -> str:
    """Human wording of what a type spec accepts, for error messages."""
    if spec == "bool":
        return "true or false"
    if spec == "auto_bool":
        return "true, false or auto"
    if spec.startswith("choice:"):
        return "one of " + ", ".join(spec[len("choice:"):].split("|"))
    if spec.startswith("optional["):
        return _accepts(spec[len("optional["):-1]) + " or none"
    if spec.startswith("list["):
        return f"a list of {spec[5:-1]} values (YAML list or comma-separated)"
    return {"int": "an integer", "float": "a number", "str": "a string", "path": "a path"}[spec]


def coerce_value(name: str, value: Any, spec: str, root: Path | None = None) -> Any:
    """Coerce one parameter value to its type spec, or raise a one-line error naming it.

    Papermill passes `-p x true` as the string "true" (it only converts True/False), and `-p x 3`
    as the int 3 or the string "3" depending on the shell, so strings are parsed here."""

    def fail() -> PolySpaceError:
        return PolySpaceError(f"parameter {name}: expected {_accepts(spec)}, got {value!r}")

    if spec.startswith("optional["):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        try:
            return coerce_value(name, value, spec[len("optional["):-1], root)
        except PolySpaceError:
            raise fail() from None
    if spec == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise fail()
    if spec == "auto_bool":
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return coerce_value(name, value, "bool", root)
        except PolySpaceError:
            raise fail() from None
    if spec == "int":
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise fail() from None
            if number.is_integer():
                return int(number)
        raise fail()
    if spec == "float":
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise fail() from None
        raise fail()
    if spec == "str":
        if isinstance(value, str):
            return value
        raise fail()
    if spec == "path":
        if isinstance(value, (str, os.PathLike)) and str(value).strip():
            path = Path(os.path.expanduser(str(value)))
            if not path.is_absolute() and root is not None:
                path = root / path
            return path
        raise fail()
    if spec.startswith("choice:"):
        options = spec[len("choice:"):].split("|")
        if isinstance(value, str) and value in options:
            return value
        raise fail()
    if spec.startswith("list["):
        inner = spec[5:-1]
        items = value
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    items = yaml.safe_load(text)
                except yaml.YAMLError:
                    raise fail() from None
            else:
                items = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(items, (list, tuple)):
            raise fail()
        try:
            return [coerce_value(name, item, inner, root) for item in items]
        except PolySpaceError:
            raise fail() from None
    raise PolySpaceError(f"parameter {name}: unknown type spec {spec!r} in stage_params.py")


# ----------------------------------------------------------------------------- presets

def load_preset(name: str, root: Path | None = None) -> dict[str, Any]:
    """The flat key -> value mapping of params/<name>.yaml; unknown keys are an error."""
    root = root or project_root()
    path = root / "params" / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "params").glob("*.yaml"))
        raise PolySpaceError(f"preset {name!r}: {path} not found; presets are {', '.join(available)}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise PolySpaceError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PolySpaceError(f"{path}: expected a mapping of parameter names to values")
    known = {**all_params(), **REPORT_KEYS}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PolySpaceError(f"{path}: unknown parameter {unknown[0]!r}; declare it in polyspace_core/stage_params.py")
    notebooks = data.get("report_notebooks")
    if "report_notebooks" in data and not (isinstance(notebooks, str) and notebooks.strip()):
        raise PolySpaceError(f"{path}: report_notebooks {notebooks!r}: expected notebook numbers like \"01,02,03\"")
    return data


def resolve_params(stage: str, given: Mapping[str, Any], env_preset: str | None = None,
                   root: Path | None = None, explicit: Collection[str] = ()) -> dict[str, Any]:
    """Notebook values (`given`) -> validated, typed params for `stage`. See the module docstring.

    `given` may hold keys of other stages (a flat preset file passed with papermill `-f`); those
    are ignored. A name no stage declares is an error. `explicit` names values of `given` that
    override the preset even where they equal the default preset's value."""
    root = root or project_root()
    spec = stage_spec(stage)
    known = all_params()
    for name in given:
        if name not in known:
            raise PolySpaceError(f"unknown parameter {name!r} for stage {stage}; "
                                 f"it accepts {', '.join(spec)}")
    for name in explicit:
        if name not in spec or name not in given:
            raise PolySpaceError(f"{EXPLICIT_ENV}: {name!r} is not a parameter given to stage {stage}; "
                                 f"name only parameters the notebook is given")
    defaults = {k: coerce_value(k, v, spec[k], root) for k, v in load_preset("default", root).items() if k in spec}
    missing = sorted(set(spec) - set(defaults))
    if missing:
        raise PolySpaceError(f"params/default.yaml: no value for {missing[0]!r} (stage {stage})")
    values = {k: coerce_value(k, given[k], spec[k], root) for k in spec if k in given}

    preset = values.get("preset", "default")
    if preset == "default" and env_preset:
        preset = env_preset
    preset_values = load_preset(preset, root) if preset != "default" else {}
    preset_values = {k: coerce_value(k, v, spec[k], root) for k, v in preset_values.items() if k in spec}

    resolved: dict[str, Any] = {}
    for name in spec:
        if name in values and (name in explicit or values[name] != defaults[name]):
            resolved[name] = values[name]          # an explicit override wins
        elif name in preset_values:
            resolved[name] = preset_values[name]
        else:
            resolved[name] = defaults[name]
    resolved["preset"] = preset
    return resolved


# ----------------------------------------------------------------------------- the workspace

@dataclass
class Workspace:
    stage: str
    params: dict[str, Any]
    root: Path
    device: Any
    interactive: bool
    provenance: dict[str, Any]
    started: float = field(default_factory=time.time)
    # a sub-folder of runs/<preset>/ and reports/<preset>/ for this stage's own outputs (a sweep point's)
    outputs: str | None = None

    @property
    def p(self) -> SimpleNamespace:
        return SimpleNamespace(**self.params)

    @property
    def preset(self) -> str:
        return self.params["preset"]

    @property
    def seed(self) -> int:
        return self.params["seed"]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs" / self.preset

    @property
    def run_dir(self) -> Path:
        return self.stage_run_dir(self.stage)

    def stage_run_dir(self, stage: str) -> Path:
        """runs/<preset>/<stage>/; this stage's own under its `outputs` sub-folder when it has one
        (the stages it reads from are always the preset's)."""
        if stage not in STAGES:
            raise PolySpaceError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        path = self.runs_dir / stage
        if stage == self.stage and self.outputs:
            path = self.runs_dir / self.outputs / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def report_dir(self) -> Path:
        return self.root / "reports" / self.preset / (self.outputs or "") / self.stage

    def path(self, p: str | os.PathLike) -> Path:
        """Resolve a path against the project root (absolute paths pass through)."""
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else self.root / p

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """Write reports/<preset>/<stage>/metrics.json: the stage's figures at top level, plus
        stage, preset, params, provenance and the elapsed time since the workspace opened."""
        reserved = {"stage", "preset", "params", "provenance", "elapsed_s"}
        clash = sorted(reserved & set(metrics))
        if clash:
            raise PolySpaceError(f"metrics key {clash[0]!r} is reserved; rename it")
        record = {k: _plain(v) for k, v in metrics.items()}
        record.update(stage=self.stage, preset=self.preset, params=self.provenance["params"],
                      provenance=self.provenance, elapsed_s=round(time.time() - self.started, 3))
        return atomic_write_json(self.report_dir / "metrics.json", record)

    def training_logs(self) -> str:
        """Where this stage's training runs wrote their TensorBoard curves (every folder under the
        run dir holding event files) and the command that serves them; a notebook shows it."""
        folders = sorted({str(p.parent.relative_to(self.run_dir))
                          for p in self.run_dir.rglob("events.out.tfevents.*")})
        if not folders:
            return f"no TensorBoard curves under {self.run_dir} yet"
        return (f"TensorBoard curves of {len(folders)} training run(s) under {self.run_dir}: "
                f"{', '.join(folders)}\nsee them with `make tensorboard PRESET={self.preset}`")

    # shown by a notebook cell that ends with `ws`
    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(str(v))}</td></tr>"
                       for k, v in self.params.items())
        prov = self.provenance
        git = prov["git"]
        git_text = (f"{git['commit'][:10] if git['commit'] else 'not a git checkout'}"
                    + (" (dirty)" if git["dirty"] else ""))
        versions = ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v)
        return (f"<h4>Stage {html.escape(self.stage)} &middot; preset <code>{html.escape(self.preset)}</code></h4>"
                f"<p>run dir <code>{html.escape(str(self.run_dir))}</code><br>"
                f"report dir <code>{html.escape(str(self.report_dir))}</code><br>"
                f"device {html.escape(prov['device'])} &middot; seed {self.seed} &middot; "
                f"interactive {self.interactive} &middot; git {html.escape(git_text)}<br>"
                f"<small>{html.escape(versions)}</small></p>"
                f"<table><tr><th>parameter</th><th>value</th></tr>{rows}</table>")

    def __repr__(self) -> str:
        lines = [f"Workspace {self.stage} (preset {self.preset}, device {self.provenance['device']}, seed {self.seed})",
                 f"  run dir    {self.run_dir}", f"  report dir {self.report_dir}"]
        lines += [f"  {k} = {v!r}" for k, v in self.params.items()]
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    """Numbers from numpy/torch become plain Python so metrics.json stays readable."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def in_jupyterlab() -> bool:
    """True inside a kernel started by a Jupyter server (JupyterLab sets JPY_SESSION_NAME);
    papermill, nbclient and nbval start kernels without it."""
    return bool(os.environ.get("JPY_SESSION_NAME"))


def notebook_values(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter-like values in a notebook namespace: plain data bound to public names."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _IPYTHON_NAMES and isinstance(v, _PLAIN_TYPES)}


def outputs_subfolder(value: str | None) -> str | None:
    """POLYSPACE_OUTPUTS as a relative folder ("sweeps/lr/01_fusion_lr=0.001"), None when unset.
    It must stay inside runs/<preset>/ and reports/<preset>/: no absolute path, no "..", and not a
    stage's own name (the preset's outputs would be mixed with it)."""
    if value is None or not value.strip():
        return None
    parts = Path(value.strip()).parts
    if Path(value.strip()).is_absolute() or ".." in parts or parts[0] in STAGES:
        raise PolySpaceError(f"{OUTPUTS_ENV}={value}: expected a relative folder inside runs/<preset>/ (no '..', "
                             f"not a stage's name), e.g. sweeps/NAME/POINT")
    return Path(*parts).as_posix()


def open_stage(stage: str, namespace: Mapping[str, Any] | None = None) -> Workspace:
    """Validate the notebook's parameters, seed, pick the device, record provenance."""
    from .seeding import best_device, seed_everything

    root = project_root()
    explicit = [name.strip() for name in os.environ.get(EXPLICIT_ENV, "").split(",") if name.strip()]
    params = resolve_params(stage, notebook_values(namespace or {}), os.environ.get(PRESET_ENV), root, explicit)
    outputs = outputs_subfolder(os.environ.get(OUTPUTS_ENV))
    seed_everything(params["seed"])
    device = best_device(params["device"])
    interactive = in_jupyterlab() if params["interactive"] == "auto" else bool(params["interactive"])
    ws = Workspace(stage=stage, params=params, root=root, device=device, interactive=interactive,
                   provenance=provenance(root, device, params), outputs=outputs)
    ws.stage_run_dir(stage)  # created on open so later cells can write into it
    return ws


def _show_polyspace_errors_briefly() -> None:
    """In a notebook, a PolySpaceError is shown as its one line, not a page of traceback (the cell
    still fails, so papermill and nbval report it)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):
        shell._showtraceback(etype, value, [f"{etype.__name__}: {value}"])

    shell.set_custom_exc((PolySpaceError,), handler)


_show_polyspace_errors_briefly()
