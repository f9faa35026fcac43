"""What a learner sees, in Chromium driven by Playwright: the course site offline, and notebook 01 in a
real JupyterLab.

papermill proves the cells run; these prove what shows. The course site (``make course``) opened with
every request off this machine blocked: each page's math typeset, its bokeh plots drawn and every
widget rendered, live by the vendored widget manager or as its static stand-in. Notebook 01 in
JupyterLab: all cells run in the browser within a deadline, the depth slider moves and the explorer
shows the new network's true parameter count, and the bokeh plot renders. Screenshots go to
build/browser/ for a person to look at. conftest.py runs these tests last, so the site test can read
the course that tests/test_notebooks.py built in the same session. Skipped, with the reason, without
Playwright or a Chromium executable ($DIRACKIT_CHROMIUM, else `chromium` on PATH; `.ci/run` installs
Debian's); the JupyterLab test also needs CIFAR data.
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
COURSE_RUN = ROOT / "build" / "test-notebooks"  # the course tests/test_notebooks.py runs and builds
FIXTURES = ROOT / "tests" / "fixtures"
SESSION_START = time.time()  # at collection, before any test of this session ran
RUN_ALL_SECONDS = 150
pytestmark = pytest.mark.browser

# JupyterLab settings for a clean, deterministic page: every cell in the DOM (no windowing), no news toast.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}

# The run's progress: the first error, else the first code cell not run yet and whether the kernel is idle.
RUN_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.model.cells;
  let pending = null;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    const error = cell.outputs.toJSON().find(o => o.output_type === 'error');
    if (error) return {error: `cell ${i}: ${error.ename}: ${error.evalue}`};
    if (cell.executionCount === null && pending === null) pending = i;
  }
  return {pending: pending, idle: panel.sessionContext.session.kernel.status === 'idle'};
}"""
KERNEL_IDLE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle';
}"""


@pytest.fixture
def chromium() -> str:
    """The Chromium executable; skips (with what to do) when it or Playwright is missing."""
    path = os.environ.get("DIRACKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium: install Debian's (apt-get install chromium) or set DIRACKIT_CHROMIUM")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    return path


@pytest.fixture
def cifar() -> None:
    """Skips (with what to do) without CIFAR data."""
    from dirackit.data import DataError, resolve_source

    try:
        resolve_source()
    except DataError as error:
        pytest.skip(f"no CIFAR data: {error}")


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


def run_all_cells(page, seconds: float) -> None:
    """Start JupyterLab's run-all and poll the cells until they all ran, one failed or ``seconds``
    passed. The command's promise settles only when the last cell ends, so it is never awaited: a
    hanging cell fails the test at the deadline, naming the cell."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    deadline = time.monotonic() + seconds
    state = {}
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE)
        assert "error" not in state, f"the notebook failed in JupyterLab: {state['error']}"
        if state["pending"] is None and state["idle"]:
            return
        time.sleep(0.5)
    if state.get("pending") is not None:  # show the cell it is stuck at
        page.evaluate(f"() => window.jupyterapp.shell.currentWidget.content.widgets[{state['pending']}]"
                      ".node.scrollIntoView()")
    page.screenshot(path=SCREENSHOTS / "01-run-all-deadline.png")
    where = "the last cell" if state.get("pending") is None else f"code cell {state['pending']}"
    pytest.fail(f"run-all did not finish within {seconds:.0f} s; still waiting at {where} "
                f"(screenshot in {SCREENSHOTS.relative_to(ROOT)})")


def test_notebook_01_in_jupyterlab(chromium, cifar, lab, tmp_path):
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

        run_all_cells(page, RUN_ALL_SECONDS)
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


# Per page: math typeset (after MathJax's queue drains), each bokeh root drawn, each widget's renderings.
PAGE_STATE = """async () => {
  const math = (window.MathJax && window.MathJax.Hub) ? await new Promise(done => window.MathJax.Hub.Queue(() => done({
      formulas: document.querySelectorAll('script[type^="math/tex"]').length,
      errors: document.querySelectorAll('.MathJax_Error, merror').length,
      raw: Array.from(document.querySelectorAll('.jp-MarkdownOutput')).some(e => e.innerText.includes('$$'))}))) : null;
  const height = e => e ? e.getBoundingClientRect().height : 0;
  const plots = Array.from(document.querySelectorAll('div[data-root-id]')).map(d =>
      !!(window.Bokeh && window.Bokeh.index[d.dataset.rootId]) && height(d.firstElementChild) > 100);
  const widgets = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'))
      .map(s => ({live: height(s.parentElement.querySelector(':scope > .widget-subarea')) > 0,
                  still: height(s.parentElement.querySelector(':scope > .dk-static')) > 0}));
  return {math, plots, widgets};
}"""
# True once the widget manager has drawn every widget the page saved a state for (the others keep
# their stand-in).
ALL_WIDGETS_LIVE = """() => {
  const saved = document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
  const state = saved ? JSON.parse(saved.textContent).state : {};
  return Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'))
    .filter(s => JSON.parse(s.textContent).model_id in state)
    .every(s => { const a = s.parentElement.querySelector(':scope > .widget-subarea');
                  return a && a.getBoundingClientRect().height > 0; });
}"""


def has_math(executed: Path) -> bool:
    """Whether the notebook's markdown holds TeX ($ outside code spans and fences)."""
    cells = json.loads(executed.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return "$" in re.sub(r"```.*?```|`[^`]*`", "", text, flags=re.S)


@pytest.fixture
def course_site(tmp_path) -> Path:
    """The course that tests/test_notebooks.py ran in this session (it runs before the browser tests),
    else a site built in seconds from the fixture notebook 06_site: math, a bokeh plot and widgets."""
    if (COURSE_RUN / "summary.json").is_file() and (COURSE_RUN / "summary.json").stat().st_mtime > SESSION_START:
        return COURSE_RUN
    import run_notebooks

    out = tmp_path / "site"
    code = run_notebooks.main(["--no-data-check", "--profile", "quick", "--out", str(out),
                               "--notebooks-dir", str(FIXTURES / "notebooks"), "--params-dir",
                               str(FIXTURES / "params"), "--baselines-dir", str(FIXTURES / "baselines"), "06_site"])
    assert code == 0, f"the fixture site did not build: {json.loads((out / 'summary.json').read_text())}"
    return out


def test_course_site_renders_offline(chromium, course_site):
    """index.html and every page with all requests off this machine blocked: math typeset, bokeh plots
    drawn, and every widget rendered (live where the widget manager was vendored, else as its stand-in)."""
    from playwright import sync_api

    summary = json.loads((course_site / "summary.json").read_text())
    pages = [row for row in summary["notebooks"] if row["html"]]
    assert pages, f"no page in {course_site}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    outside, page_errors, drawn = [], [], 0

    def only_local(route):
        if route.request.url.startswith(("file:", "data:", "blob:", "about:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.route("**/*", only_local)
        page.on("pageerror", lambda error: page_errors.append(f"{page.url}: {error}"))

        page.goto((course_site / "index.html").as_uri())
        for row in pages:
            assert page.locator(f'a[href="{row["html"]}"]').count() > 0, f"index.html has no link to {row['html']}"
        page.screenshot(path=SCREENSHOTS / "site-index.png", full_page=True)

        for row in pages:
            page.goto((course_site / row["html"]).as_uri())
            assert page.title() not in ("", "Notebook") and page.title() != row["notebook"], page.title()
            if "html-manager/embed-amd.js" in (course_site / row["html"]).read_text():  # vendored at build time
                page.wait_for_function(ALL_WIDGETS_LIVE, timeout=60_000, polling=250)
            state = page.evaluate(PAGE_STATE)
            where = row["html"]
            if has_math(course_site / row["executed"]):
                math = state["math"]
                assert math and math["formulas"] > 0 and not math["raw"], f"{where}: math not typeset: {math}"
            assert not (state["math"] or {}).get("errors"), f"{where}: MathJax errors"
            assert all(state["plots"]), f"{where}: bokeh plots not drawn: {state['plots']}"
            missing = [i for i, w in enumerate(state["widgets"]) if not (w["live"] or w["still"])]
            assert not missing, f"{where}: widgets {missing} of {len(state['widgets'])} show nothing"
            drawn += len(state["plots"])
            first = page.locator(".jupyter-widgets").first
            if first.count():
                first.scroll_into_view_if_needed()
            page.screenshot(path=SCREENSHOTS / f"site-{row['notebook']}.png")
        browser.close()
    assert not outside, f"the site asked for files off this machine: {outside[:5]}"
    assert not page_errors, f"uncaught errors in the pages: {page_errors[:5]}"
    assert drawn > 0, "no bokeh plot on any page: the check above checked nothing"
