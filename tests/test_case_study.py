"""The case-study page: an uploaded image run live through a shipped model, and every bad input explained."""

import base64
import io
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from pidcore.atoms import ATOMS, LABELS
from pidcore.datasets import shapes
from pidcore.models.loading import load_vlm
from pidcore.pipeline.case_study import MAX_UPLOAD_BYTES, CaseInputError, analyse, check_question, read_image
from pidcore.pipeline.settings import DEFAULT_ESTIMATOR
from pidcore.shipped import DEFAULT_DB, MODELS
from pidcore.store import read_sample_table, reference_runs

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _page():
    app = AppTest.from_file(APP, default_timeout=180)
    app.switch_page("pages/case_study.py").run()
    assert not app.exception
    return app


def test_an_uploaded_image_gets_probes_and_atoms_from_a_shipped_model():
    image = shapes.render(2, random.Random(3))
    app = _page()
    assert app.multiselect(key="case_models").value == ["idefics3-s"]
    app.file_uploader(key="case_image").upload("shape.png", _png(image), "image/png").run()
    assert not app.exception and not app.error
    assert not app.get("plotly_chart") and any("Press Run" in info.value for info in app.info)
    app.button(key="case_run").click().run()
    assert not app.exception and not app.error
    charts = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    assert len(charts) == 3
    shown = {match[1]: float(match[2]) for markdown in app.markdown
             if (match := re.match(r"\*\*(.+): ([+-]\d+\.\d{3})\*\*", markdown.value))}
    assert list(shown) == [LABELS[atom] for atom in ATOMS]
    assert any("can be negative" in caption.value for caption in app.caption)

    runs = reference_runs(DEFAULT_DB, "idefics3-s", 4, DEFAULT_ESTIMATOR)
    reference = runs[runs["task"] == "vision"].iloc[0]  # a colour question: the task that asks it, not the first
    assert runs["task"].iloc[0] != "vision"
    assert app.selectbox(key="case_task_idefics3-s").value == "vision"
    expected = analyse(load_vlm(str(MODELS / "idefics3-s"), device="auto"), str(DEFAULT_DB), reference["run_id"],
                       DEFAULT_ESTIMATOR, read_image(_png(image)), "What colour is the shape?",
                       ["red", "green", "blue", "yellow"])
    output = expected.atoms[max(expected.atoms)]
    assert shown == {LABELS[atom]: round(output[atom], 3) for atom in ATOMS}
    bars = [_values(trace["y"]) for trace in charts[0]["data"]]
    np.testing.assert_allclose(bars, expected.probs[:, -1], atol=1e-6)
    layers = charts[2]["data"][0]
    assert list(_values(layers["x"])) == sorted(expected.atoms)
    assert _values(layers["y"])[-1] == pytest.approx(output.r)


def _values(encoded) -> np.ndarray:
    """A Plotly figure JSON's array: a plain list, or a typed array given as {"dtype", "bdata" (base64)}."""
    if isinstance(encoded, dict):
        return np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"])
    return np.asarray(encoded)


@pytest.mark.parametrize("content, message", [
    (b"not an image at all", "not a readable PNG or JPEG"),
    (_png(Image.new("RGB", (64, 64), (10, 200, 30)))[:60], "not a readable PNG or JPEG"),
])
def test_a_bad_upload_is_explained_and_the_page_keeps_working(content, message):
    app = _page()
    app.file_uploader(key="case_image").upload("bad.png", content, "image/png").run()
    assert not app.exception
    assert any(message in error.value for error in app.error)


def test_an_empty_question_or_one_option_is_explained():
    app = _page()
    app.checkbox(key="case_example").check().run()
    app.text_input(key="case_question").input("   ").run()
    assert any("the question is empty" in error.value for error in app.error)
    app.text_input(key="case_question").input("Which?").run()
    app.text_area(key="case_options").input("only one").run()
    assert any("give 2 to 6 options" in error.value for error in app.error)


def test_a_model_that_fails_to_load_is_explained(tmp_path):
    app = _page()
    app.checkbox(key="case_example").check().run()
    app.multiselect(key="case_models").set_value([]).run()
    app.text_input(key="case_other").input(str(tmp_path / "no-model")).run()
    app.button(key="case_run").click().run()
    assert not app.exception
    assert any("could not be run" in error.value and "cannot load model" in error.value for error in app.error)


def test_read_image_bounds_size_and_format():
    with pytest.raises(CaseInputError, match="limit is 5 MB"):
        read_image(b"\x89PNG" + b"0" * MAX_UPLOAD_BYTES)
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    with pytest.raises(CaseInputError, match="not a PNG or JPEG"):
        read_image(gif.getvalue())
    assert read_image(_png(Image.new("L", (8, 8)))).mode == "RGB"
    assert check_question(" Which? ", ["a", " ", "b"]) == ("Which?", ["a", "b"])


def test_models_run_side_by_side_and_an_edit_keeps_the_results_until_run_is_pressed():
    app = _page()
    app.checkbox(key="case_example").check().run()
    app.multiselect(key="case_models").set_value(["idefics3-s", "llava-s"]).run()
    app.button(key="case_run").click().run()
    assert not app.exception and not app.error
    assert [header.value for header in app.header] == ["idefics3\\-s", "llava\\-s"]
    assert len(app.columns) >= 2 and len(app.get("plotly_chart")) == 6
    app.text_input(key="case_question").input("Which colour does the shape have?").run()
    assert not app.get("plotly_chart")  # new inputs: nothing is run until Run
    assert sum("Press Run" in info.value for info in app.info) == 2


def test_a_stored_sample_opens_with_its_image_question_options_and_model():
    runs = reference_runs(DEFAULT_DB, "llava-s", 2, DEFAULT_ESTIMATOR)
    run_id = runs[runs["task"] == "synergy"]["run_id"].iloc[0]
    app = AppTest.from_file(APP, default_timeout=180)
    app.switch_page("pages/case_study.py")
    app.query_params.update(run=run_id, sample="synergy-7")
    app.run()
    assert not app.exception and not app.error
    stored = read_sample_table(DEFAULT_DB, run_id).set_index("sample_id").loc["synergy-7"]
    assert app.text_input(key="case_question").value == stored["question"]
    assert app.text_area(key="case_options").value.splitlines() == list(stored["options"])
    assert app.multiselect(key="case_models").value == ["llava-s"]
    assert app.checkbox(key="case_use_stored").value
    app.button(key="case_run").click().run()
    assert not app.exception and len(app.get("plotly_chart")) == 3
