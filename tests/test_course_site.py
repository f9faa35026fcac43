"""ci/course_site.py without a kernel or a browser: widget stand-ins from saved state, page titles and
what a notebook teaches, and the pinned npm assets."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import ipywidgets as widgets
import pytest
from ipywidgets.embed import embed_data

import course_site

VIEW = course_site.WIDGET_VIEW


def saved(*shown: widgets.Widget) -> tuple[list[dict], dict]:
    """The outputs and notebook metadata papermill saves for widgets displayed in a cell."""
    data = embed_data(views=list(shown))
    outputs = [{VIEW: view, "text/plain": f"{type(w).__name__}(...)"} for w, view in zip(shown, data["view_specs"])]
    return outputs, {"widgets": {course_site.WIDGET_STATE: data["manager_state"]}}


def test_stand_in_shows_each_control_as_it_was_left():
    box = widgets.VBox([
        widgets.Dropdown(options=["wrn", "diracnet"], value="diracnet", description="family"),
        widgets.IntRangeSlider(value=(2, 5), min=0, max=9, description="epochs"),
        widgets.Tab(children=[widgets.HTML("<i>folded</i>")], titles=("deploy",)),
        widgets.FloatProgress(value=3, max=10),
        widgets.HBox([widgets.Button(description="Train"), widgets.Checkbox(value=True, description="speed")]),
    ])
    (output,), metadata = saved(box)
    html = course_site.widget_static(output, metadata)
    assert html.startswith('<div class="dk-static"><div class="dk-static-note">Interactive in JupyterLab;')
    for shown in ("family: <b>diracnet</b>", "epochs: <b>2 – 5</b>", "<b>deploy</b>", "<i>folded</i>",
                  '<progress value="3.0" max="10.0">', '<span class="dk-button">Train</span>',
                  "speed: <b>True</b>", 'class="dk-row"'):
        assert shown in html


def test_stand_in_of_an_output_widget_shows_its_outputs_and_escapes_text():
    out = widgets.Output()
    png = base64.b64encode(b"\x89PNG fake").decode()
    out.outputs = ({"output_type": "stream", "name": "stdout", "text": "a < b\n"},
                   {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"},
                    "metadata": {}})
    (output,), metadata = saved(out)
    html = course_site.widget_static(output, metadata)
    assert "<pre>a &lt; b\n</pre>" in html and f'src="data:image/png;base64,{png}"' in html
    assert "&lt;Figure&gt;" not in html  # the image stands for the figure, not its text form


def test_widget_without_saved_state_shows_its_text_form():
    (output,), _ = saved(widgets.IntSlider(value=4))
    html = course_site.widget_static(output, {"widgets": {course_site.WIDGET_STATE: {"state": {}}}})
    assert "was not saved" in html and "<pre>IntSlider(...)</pre>" in html


def test_title_and_what_the_notebook_teaches_come_from_its_first_markdown():
    nb = {"cells": [{"cell_type": "code", "source": "# a comment, not a heading"},
                    {"cell_type": "markdown", "source": "# 07 · Title here\n\nFirst paragraph,\nover two lines.\n\nMore."}]}
    assert course_site.notebook_title(nb) == "07 · Title here"
    assert course_site.first_paragraph(nb) == "First paragraph,\nover two lines."
    assert course_site.notebook_title({"cells": []}) == "" and course_site.first_paragraph({"cells": []}) == ""


def npm_like_tarball(path, files: dict[str, bytes]) -> str:
    """A tarball laid out as npm packs one (everything under package/); returns its sha512 as npm does."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def test_a_cached_tarball_is_used_only_if_it_is_the_pinned_one(tmp_path):
    tarball = tmp_path / "demo-1.0.0.tgz"
    integrity = npm_like_tarball(tarball, {"dist/embed-amd.js": b"js", "dist/a.woff2": b"font",
                                           "dist/embed.js.map": b"map", "lib/x.js": b"lib"})
    assert course_site.npm_tarball("demo@1.0.0", integrity, cache=tmp_path) == tarball
    course_site.copy_npm_files(tarball, ("dist/embed-amd.js", "dist/*.woff2"), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.woff2", "embed-amd.js"]
    with pytest.raises(RuntimeError, match="is not the pinned demo@1.0.0"):
        course_site.npm_tarball("demo@1.0.0", "not-" + integrity, cache=tmp_path)
    assert not tarball.exists()  # a wrong file is not kept to be trusted later
