"""The executed course as a site that opens offline: one page per notebook and a landing page.

``run_notebooks.py`` calls ``build_site`` once its notebooks have run. The pages are nbconvert's
lab pages (``site_templates/course_page`` changes only what it must) with every script local, in
``<out>/_static/``:

- MathJax 2.7, copied from the ``jupyter-server-mathjax`` wheel (the MathJax that Jupyter's own
  server ships, and the version nbconvert's math setup is written for);
- require.js and the ipywidgets HTML manager (``@jupyter-widgets/html-manager``, which draws widgets
  from the state papermill saved in the notebook), fetched once with ``npm pack`` at the versions
  pinned below, checked against their sha512 and kept in ``build/site-assets/``;
- bokeh plots need nothing: ``dk.viz.show_bokeh`` puts BokehJS inline in the output.

Every widget also gets a static rendering of its saved state (its controls' values and what its
outputs showed) with the note that it is interactive in JupyterLab; CSS hides it once the manager
has drawn the live widget, so a page built without npm, or opened with scripts off, still shows it.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import os
import platform
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "site_templates"
ASSET_CACHE = ROOT / "build" / "site-assets"
STATIC = "_static"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"  # the configurations jupyter-server-mathjax ships
# npm package -> (sha512 of its tarball as npm's "integrity" gives it, files to copy from it)
NPM_ASSETS = {
    "requirejs@2.3.8": ("7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
                        ("require.js",)),
    "@jupyter-widgets/html-manager@1.0.15": (
        "5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        ("dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/*.ttf")),  # the fonts of its icons
}
VERDICT_CLASS = {"shown": "shown", "within noise at this size": "noise", "contradicted here": "contradicted"}


@dataclass(frozen=True)
class Assets:
    """Page-relative URLs of the local scripts; an empty URL leaves that script out of the pages."""

    mathjax_url: str = ""
    require_js_url: str = ""
    widget_renderer_url: str = ""
    notes: tuple[str, ...] = ()  # what is missing and why, printed by the runner


# ---- vendoring -------------------------------------------------------------------------------------

def copy_mathjax(static: Path) -> str:
    """MathJax from the jupyter-server-mathjax wheel into ``static/mathjax``; its URL, or "" without it.

    Only what the TeX input and HTML-CSS output load is copied (no SVG output, no translations)."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return ""
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(source, static / "mathjax", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("localization", "SVG", "*.mp3", "*.ogg"))
    return f"{STATIC}/mathjax/MathJax.js?config={MATHJAX_CONFIG}"


def npm_tarball(spec: str, integrity: str, cache: Path = ASSET_CACHE) -> Path:
    """The npm tarball of ``spec`` (``name@version``), from the cache or ``npm pack``; raises
    RuntimeError (one line) when npm is missing or fails, or the tarball is not the pinned one."""
    name, version = spec.rsplit("@", 1)
    tarball = cache / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed")
        cache.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run([npm, "pack", "--silent", "--fetch-retries=1", "--fetch-timeout=30000",
                            "--pack-destination", str(cache), spec], check=True, capture_output=True, text=True,
                           timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            detail = (getattr(error, "stderr", "") or "").strip().splitlines()
            raise RuntimeError(f"npm pack {spec} failed{': ' + detail[-1] if detail else ''}") from None
    digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != integrity:
        tarball.unlink()
        raise RuntimeError(f"{tarball.name} is not the pinned {spec} (sha512 differs); removed it")
    return tarball


def copy_npm_files(tarball: Path, patterns: tuple[str, ...], dest: Path) -> None:
    """The package's files matching ``patterns`` (paths inside ``package/``) into ``dest``, flat."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            inner = Path(member.name).relative_to("package")
            if member.isfile() and any(inner.match(p) and len(inner.parts) == len(Path(p).parts)
                                       for p in patterns):
                (dest / inner.name).write_bytes(archive.extractfile(member).read())


def vendor_assets(out: Path) -> Assets:
    """Copy the pages' scripts into ``out/_static``; what could not be had is named in ``notes``."""
    static = out / STATIC
    notes = []
    mathjax = copy_mathjax(static)
    if not mathjax:
        notes.append("math stays as TeX source: install jupyter-server-mathjax (pip install -e '.[notebooks]')")
    urls = {}
    for spec, (integrity, patterns) in NPM_ASSETS.items():
        try:
            tarball = npm_tarball(spec, integrity)
        except RuntimeError as error:
            notes.append(f"widgets show their static renderings only: {error}")
            return Assets(mathjax, notes=tuple(notes))
        folder = spec.rsplit("@", 1)[0].split("/")[-1]
        copy_npm_files(tarball, patterns, static / folder)
        urls[folder] = f"{STATIC}/{folder}/{Path(patterns[0]).name}"
    return Assets(mathjax, urls["requirejs"], urls["html-manager"], tuple(notes))


# ---- static renderings of widgets -------------------------------------------------------------------

def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " – ".join(_format(v) for v in value)
    return str(value)


def _render_output(output: dict, state: dict) -> str:
    """One output of an ``Output`` widget as it showed: stream text, an image, HTML or plain text."""
    kind = output.get("output_type")
    if kind == "stream":
        return f"<pre>{html.escape(''.join(output.get('text', '')))}</pre>"
    if kind == "error":
        return f"<pre>{html.escape(str(output.get('ename')))}: {html.escape(str(output.get('evalue')))}</pre>"
    data = output.get("data", {})
    if WIDGET_VIEW in data:
        return _render_model(data[WIDGET_VIEW].get("model_id", ""), state)
    if "image/png" in data:
        return f'<img alt="figure" src="data:image/png;base64,{"".join(data["image/png"]).strip()}">'
    for mime in ("image/svg+xml", "text/html"):
        if mime in data:
            return "".join(data[mime])
    if "text/plain" in data:
        return f"<pre>{html.escape(''.join(data['text/plain']))}</pre>"
    return ""


def _render_model(model_id: str, state: dict) -> str:
    """A widget and its children as static HTML, from the widget state saved in the notebook."""
    model_id = model_id.removeprefix("IPY_MODEL_")
    if model_id not in state:
        return ""
    name, s = state[model_id].get("model_name", ""), state[model_id].get("state", {})
    label = f"{html.escape(s['description'])}: " if s.get("description") else ""
    if "children" in s:  # Box, HBox, VBox, GridBox, Tab, Accordion, Stack
        titles = list(s.get("titles") or [])
        parts = []
        for i, child in enumerate(s["children"]):
            title = f"<b>{html.escape(titles[i])}</b>" if i < len(titles) and titles[i] else ""
            parts.append(f"<div>{title}{_render_model(child, state)}</div>")
        direction = "dk-row" if name == "HBoxModel" else "dk-column"
        return f'<div class="{direction}">{"".join(parts)}</div>'
    if name == "OutputModel":
        return "".join(_render_output(o, state) for o in s.get("outputs", []))
    if name == "ButtonModel":
        return f'<span class="dk-button">{html.escape(s.get("description", ""))}</span>'
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<div>{label}{s.get('value', '')}</div>"
    if name.endswith("ProgressModel"):
        return (f'<span class="dk-control">{label}<progress value="{s.get("value", 0)}" '
                f'max="{s.get("max", 100)}"></progress></span>')
    if "_options_labels" in s:  # Dropdown, RadioButtons, ToggleButtons, SelectionSlider, Select...
        labels, index = s["_options_labels"], s.get("index")
        chosen = [labels[i] for i in (index if isinstance(index, (list, tuple)) else [index])
                  if i is not None and i < len(labels)]
        return f'<span class="dk-control">{label}<b>{html.escape(", ".join(chosen))}</b></span>'
    if "value" in s:  # sliders, text fields, checkboxes, labels
        return f'<span class="dk-control">{label}<b>{html.escape(_format(s["value"]))}</b></span>'
    return f'<span class="dk-control">{label}{html.escape(name.removesuffix("Model"))}</span>'


def widget_static(data: dict, metadata: dict) -> str:
    """The static stand-in of a widget output (its ``data``), from the notebook's saved widget state;
    a widget the notebook kept no state for shows its plain-text form."""
    state = metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    model_id = data[WIDGET_VIEW].get("model_id", "")
    if model_id in state:
        note, body = "Interactive in JupyterLab; what it showed when the notebook ran:", _render_model(model_id, state)
    else:
        note = "Interactive in JupyterLab; its state was not saved with the notebook, only its text:"
        body = f"<pre>{html.escape(''.join(data.get('text/plain', '')))}</pre>"
    return f'<div class="dk-static"><div class="dk-static-note">{note}</div>{body}</div>'


# ---- pages ------------------------------------------------------------------------------------------

def notebook_title(nb: dict) -> str:
    """The text of the notebook's first heading, else its file name's stem is used by the caller."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def first_paragraph(nb: dict) -> str:
    """The first markdown paragraph that is not a heading: what the notebook teaches, in its words."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        for block in "".join(cell.get("source", "")).split("\n\n"):
            block = block.strip()
            if block and not block.startswith("#"):
                return block
    return ""


def export_page(executed: Path, assets: Assets) -> Path:
    """``<stem>.html`` next to the executed notebook: its title in the tab, math, plots and widgets
    drawn from files in the site."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(template_name="course_page", extra_template_basedirs=[str(TEMPLATES)],
                            mathjax_url=assets.mathjax_url, require_js_url=assets.require_js_url,
                            widget_renderer_url=assets.widget_renderer_url)
    exporter.register_filter("widget_static", widget_static)
    title = notebook_title(nb) or executed.stem
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    page = executed.with_suffix(".html")
    page.write_text(body, encoding="utf-8")
    return page


# ---- the landing page -------------------------------------------------------------------------------

def describe_machine() -> dict[str, str]:
    """The device the notebooks' ``device="auto"`` picks here, and the torch that ran them."""
    import torch

    if torch.cuda.is_available():
        device = f"CUDA: {torch.cuda.get_device_name(0)}"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        device = "Apple MPS"
    else:
        device = f"CPU: {cpu_name()}, {os.cpu_count()} logical cores"
    return {"device": device, "torch": torch.__version__, "python": platform.python_version()}


def cpu_name() -> str:
    """The processor's model name where Linux tells it, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def notebook_entry(row: dict, out: Path) -> dict:
    """What the landing page says about one notebook: title, what it teaches, claims, links."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    nb = json.loads((out / row["executed"]).read_text()) if row.get("executed") else {}
    results = row.get("results") or {}
    claims = results.get("claims") if isinstance(results.get("claims"), list) else []
    links = [(label, row[key]) for label, key in (("page", "html"), ("notebook", "executed"), ("log", "log"))
             if row.get(key)]
    if (out / row["notebook"] / "results.json").is_file():
        links.append(("results.json", f"{row['notebook']}/results.json"))
    teaches = first_paragraph(nb)
    return {**row, "title": notebook_title(nb) or row["notebook"],
            "teaches": markdown2html_mistune(teaches) if teaches else "",
            "claims": [{**c, "css": VERDICT_CLASS.get(c.get("verdict"), "")} for c in claims
                       if isinstance(c, dict)],
            "links": links}


def write_landing(out: Path, summary: dict, assets: Assets) -> Path:
    """``index.html``: the run (profile, device, dataset, date) and, per notebook, what it teaches,
    its claims with this run's verdicts, and links to its page, executed notebook, log and results."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("landing.html.j2").render(
        summary=summary, notebooks=[notebook_entry(row, out) for row in summary["notebooks"]],
        mathjax_url=assets.mathjax_url)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def build_site(out: Path, summary: dict) -> list[str]:
    """Pages for every executed notebook (each row's ``html`` set, relative to ``out``), then the
    landing page; returns the notes on what the site lacks (none when everything was vendored)."""
    assets = vendor_assets(out)
    for row in summary["notebooks"]:
        if row.get("executed"):
            row["html"] = export_page(out / row["executed"], assets).name
    summary.setdefault("built", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    summary.setdefault("machine", describe_machine())
    write_landing(out, summary, assets)
    return list(assets.notes)
