"""JupyterLab and the HTML reports in a real browser (Playwright driving Debian's Chromium).

Enable on a developer machine with `apt-get install chromium` (Debian) and
`pip install -e .[dev]` (Playwright); `.ci/run` installs both. Without Chromium these tests are
skipped with that message, never passed silently. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium: `apt-get install chromium` "
                "(.ci/run does this), then re-run", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="browser tests need Playwright: pip install -e .[dev]")

# flags that keep Chromium from reaching out to the network (this machine has none) and run it as root
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-default-apps"]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory, smoke_report):
    """JupyterLab on a free loopback port with a token, notebooks on the smoke preset."""
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("lab")
    # render every cell (JupyterLab 4 only renders cells in view by default), so the test can read
    # every prompt and output of the notebook
    settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    # never autosave: the executed notebook must not overwrite the output-free one in git
    docmanager = home / "settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    env = {**os.environ, "POLYSPACE_PRESET": "smoke", "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={ROOT}", "--ServerApp.port_retries=0",
                             "--LabApp.expose_app_in_browser=True",
                             *(["--allow-root"] if os.geteuid() == 0 else [])],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(home / 'lab.log').read_text()[-2000:]}") from None
            time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError("JupyterLab did not start within 90 s")
    yield url, token
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _output_images(cell) -> list[str]:
    return [img.get_attribute("src") or "" for img in cell.locator(".jp-OutputArea img").all()]


def test_alignment_notebook_runs_in_jupyterlab_and_widgets_are_live(browser, jupyterlab):
    url, token = jupyterlab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/lab/tree/notebooks/03_alignment.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], #jp-main-statusbar :text('Idle')",
                           timeout=60_000)

    # the app is exposed (expose_app_in_browser) so the test runs JupyterLab's own command once
    # the kernel session is ready, as the Run > Run All Cells menu does
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext", timeout=60_000)
    page.evaluate("async () => { const w = window.jupyterapp.shell.currentWidget; await w.sessionContext.ready; "
                  "await window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    # every code cell has run when no prompt shows [*] or stays empty
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt")
    deadline = time.time() + 300
    while time.time() < deadline:
        texts = [t.strip() for t in prompts.all_inner_texts()]
        if texts and all(t.startswith("[") and t not in ("[*]:", "[ ]:") for t in texts):
            break
        time.sleep(1)
    else:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab_03_alignment_timeout.png"))
        pytest.fail(f"cells did not finish: prompts {texts}")

    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()[:2000]

    dropdown = page.locator(".widget-dropdown select").first
    dropdown.wait_for(timeout=30_000)
    widget_cell = page.locator(".jp-CodeCell", has=page.locator(".widget-dropdown")).first
    widget_cell.scroll_into_view_if_needed()
    before = _output_images(widget_cell)
    assert before and all(src.startswith("data:image") or src.startswith("blob:")
                          for src in before), "no figure rendered"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jupyterlab_03_alignment_cka.png"))
    options = dropdown.locator("option").all_inner_texts()
    current = dropdown.input_value()
    other = next(o for o in dropdown.locator("option").all() if o.get_attribute("value") != current)
    dropdown.select_option(other.get_attribute("value"))
    deadline = time.time() + 60
    while time.time() < deadline and _output_images(widget_cell) == before:
        time.sleep(0.5)
    after = _output_images(widget_cell)
    assert after and after != before, f"figure did not change when the dropdown moved from {current} ({options})"

    widget_cell.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "jupyterlab_03_alignment_changed.png"))
    page.close()


def test_smoke_report_index_works_offline(browser, smoke_report):
    index = ROOT / "reports" / "smoke" / "index.html"
    assert index.is_file()
    context = browser.new_context(offline=True)
    requested_remote: list[str] = []
    context.route("http*://**", lambda route: (requested_remote.append(route.request.url), route.abort()))
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))

    page.goto(index.as_uri())
    links = page.locator("table.stages a[href$='.html']")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert len(hrefs) == 8, hrefs
    for href in [None, *hrefs]:
        if href is not None:
            target = index.parent / href
            assert target.is_file(), f"index links to missing {href}"
            page.goto(target.as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                               ".map(i => i.src.slice(0, 80))")
        assert broken == [], f"{href or 'index.html'}: images not loaded: {broken}"
        # what a reader sees: no progress bar frozen at its first draw, no kernel transport warning
        text = page.inner_text("body")
        assert "%|" not in text and "without encryption" not in text, f"{href}: progress bar or kernel log shown"
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(index.as_uri())
    page.screenshot(path=str(ARTIFACTS / "report_smoke_index.png"), full_page=True)
    assert console_errors == [], console_errors
    assert requested_remote == [], f"the report fetched from the network: {requested_remote}"
    context.close()


def test_sweep_page_from_the_index_shows_both_points_and_sorts(browser, smoke_sweep):
    """The index links the smoke sweep; its page, offline, shows both points and their figure,
    and a click on a header sorts the rows by that column."""
    sweep = smoke_sweep["sweep"]
    context = browser.new_context(offline=True)
    requested_remote: list[str] = []
    context.route("http*://**", lambda route: (requested_remote.append(route.request.url), route.abort()))
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto((ROOT / "reports" / "smoke" / "index.html").as_uri())
    page.locator("a.sweep", has_text="04-fusion_lr").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("sweeps/04-fusion_lr/index.html")
    rows = page.locator("#points tbody tr")
    assert rows.count() == 2
    names = rows.locator("td:first-child").all_inner_texts()
    assert names == [p["point"] for p in sweep["points"]]
    broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert page.locator("img").count() == 1 and broken == 0

    # the column of the swept value: ascending, then descending
    column = page.locator("#points thead th", has_text="fusion_lr")
    by_lr = sorted(sweep["points"], key=lambda p: p["values"]["fusion_lr"])
    column.click()
    assert rows.locator("td:first-child").all_inner_texts() == [p["point"] for p in by_lr]
    column.click()
    assert rows.locator("td:first-child").all_inner_texts() == [p["point"] for p in reversed(by_lr)]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report_smoke_sweep.png"), full_page=True)
    assert errors == [] and requested_remote == [], (errors, requested_remote)
    context.close()
