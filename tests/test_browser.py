"""Notebook 01 in a real JupyterLab, driven by Chromium through Playwright.

papermill proves the cells run; this proves what a learner sees: the notebook runs in the browser,
the depth slider moves and the explorer shows the new network's true parameter count, and the bokeh
plot renders offline (BokehJS inline). Screenshots go to build/browser/ for a person to look at.
Skipped, with the reason, without Playwright, a Chromium executable ($DIRACKIT_CHROMIUM, else
`chromium` on PATH; `.ci/run` installs Debian's) or CIFAR data.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_wide_resnets.ipynb"
SCREENSHOTS = ROOT / "build" / "browser"
RUN_ALL_SECONDS = 150
pytestmark = pytest.mark.browser

# JupyterLab settings for a clean, deterministic page: every cell in the DOM (no windowing), no news toast.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}

# True once every code cell has an execution count and the kernel is idle; the first error otherwise.
RUN_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    const error = cell.outputs.toJSON().find(o => o.output_type === 'error');
    if (error) return `cell ${i}: ${error.ename}: ${error.evalue}`;
    if (cell.executionCount === null) return false;
  }
  return panel.sessionContext.session.kernel.status === 'idle';
}"""
KERNEL_IDLE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle';
}"""


@pytest.fixture
def chromium() -> str:
    """The Chromium executable; skips (with what to do) when it, Playwright or CIFAR is missing."""
    path = os.environ.get("DIRACKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium: install Debian's (apt-get install chromium) or set DIRACKIT_CHROMIUM")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    from dirackit.data import DataError, resolve_source

    try:
        resolve_source()
    except DataError as error:
        pytest.skip(f"no CIFAR data: {error}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quick_copy(folder: Path) -> Path:
    """Notebook 01 with the CI parameters injected, as papermill would, but not executed."""
    import papermill
    import yaml

    params = yaml.safe_load((ROOT / "ci" / "params" / "01_wide_resnets.yaml").read_text())
    params["out_dir"] = str(folder / "runs")
    copy = folder / NOTEBOOK.name
    papermill.execute_notebook(str(NOTEBOOK), str(copy), parameters=params, prepare_only=True,
                               progress_bar=False)
    return copy


@pytest.fixture
def lab(chromium, tmp_path):
    """A JupyterLab server on localhost serving ``tmp_path`` with private settings; yields its URL."""
    settings = tmp_path / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        plugin, file = name.rsplit("/", 1)
        (settings / plugin).mkdir(parents=True, exist_ok=True)
        (settings / plugin / file).write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime")}
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.expose_app_in_browser=True", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not answer within 60 s")
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_notebook_01_in_jupyterlab(chromium, lab, tmp_path):
    from playwright import sync_api

    import dirackit as dk

    copy = quick_copy(tmp_path)
    url, token = lab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page_errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.goto(f"{url}/lab/tree/{copy.name}?token={token}")
        page.wait_for_function(KERNEL_IDLE, timeout=60_000, polling=250)

        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        state = page.wait_for_function(RUN_STATE, timeout=RUN_ALL_SECONDS * 1000, polling=500).json_value()
        assert state is True, f"the notebook failed in JupyterLab: {state}"
        page.screenshot(path=SCREENSHOTS / "01-run-all-done.png")

        # The Train button's run (pressed by the notebook itself) left its table in the widget's output.
        trained = page.locator(".widget-vbox", has=page.locator(".widget-button", has_text="Train this network"))
        trained.scroll_into_view_if_needed()
        assert "test_acc" in trained.inner_text()
        trained.screenshot(path=SCREENSHOTS / "02-train-button-run.png")

        # The explorer: move the depth slider one step with the keyboard, as a learner would.
        explorer = page.locator(".widget-interact").first
        depth = explorer.locator(".widget-slider", has=page.locator("label", has_text=re.compile(r"^depth$")))
        before = int(depth.locator(".widget-readout").inner_text())
        width = int(explorer.locator(".widget-slider", has=page.locator("label", has_text=re.compile(r"^width k$")))
                    .locator(".widget-readout").inner_text())
        explorer.scroll_into_view_if_needed()
        explorer.screenshot(path=SCREENSHOTS / "03-explorer-before.png")
        depth.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        after = before + 6
        shown = explorer.get_by_text(re.compile(rf"WRN-{after}-{width}: [\d,]+ parameters"))
        shown.wait_for(timeout=60_000)
        explorer.screenshot(path=SCREENSHOTS / "04-explorer-after-depth-step.png")
        params = int(re.search(r": ([\d,]+) parameters", shown.inner_text())[1].replace(",", ""))
        assert int(depth.locator(".widget-readout").inner_text()) == after
        assert params == dk.count_params(dk.build_model(f"wrn-{after}-{width}", num_classes=10))

        # The bokeh plot: BokehJS came inline with the output and drew a figure with a canvas.
        page.wait_for_function("() => window.Bokeh && Object.keys(window.Bokeh.index).length > 0", timeout=30_000)
        figure = page.locator(".bk-Figure, .bk-Column, .bk-Row").first
        figure.scroll_into_view_if_needed()
        box = figure.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 200, f"bokeh figure not drawn: {box}"
        assert page.locator("canvas").count() > 0
        figure.screenshot(path=SCREENSHOTS / "05-bokeh-curves.png")
        browser.close()
    assert not page_errors, f"uncaught errors in the page: {page_errors}"
    assert json.loads((tmp_path / "runs" / "results.json").read_text())["explorer_params_match"] is True
