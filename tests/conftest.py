"""Shared test setup: the project root and a quieter, deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def smoke_report():
    """The smoke report, run once per test session (papermill, as `make report PRESET=smoke`).
    The notebook tests check it; the browser tests read its HTML and reuse its outputs."""
    from polyspace_core.report import StageResult, run_report

    if os.environ.get("POLYSPACE_REUSE_SMOKE_REPORT") == "1":
        # developer opt-in while iterating on the browser tests: reuse reports/smoke as it is
        import json
        index = json.loads((ROOT / "reports" / "smoke" / "index.json").read_text())
        return [StageResult(**s) for s in index["stages"]]
    return run_report("smoke", root=ROOT)
