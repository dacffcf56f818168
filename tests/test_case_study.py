"""The case-study page: an uploaded image run live through a shipped model, and every bad input explained."""

import io
import random
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from pidcore.datasets import shapes
from pidcore.pipeline.case_study import MAX_UPLOAD_BYTES, CaseInputError, check_question, read_image

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
    app = _page()
    assert app.multiselect(key="case_models").value == ["idefics3-s"]
    app.file_uploader(key="case_image").upload("shape.png", _png(shapes.render(2, random.Random(3))),
                                                "image/png").run()
    assert not app.exception and not app.error
    assert len(app.get("plotly_chart")) == 3
    text = " ".join(markdown.value for markdown in app.markdown)
    for label in ("R (redundancy)", "U1 (vision-unique)", "U2 (language-unique)", "S (synergy)"):
        assert label in text
    assert any("can be negative" in caption.value for caption in app.caption)


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
