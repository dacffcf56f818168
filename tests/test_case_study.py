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
from pidcore.dashboard.export import LEGEND_LAYOUT_PX, MARGIN_PX, WIDE_CHARACTER_EM
from pidcore.datasets import shapes
from pidcore.models.loading import load_vlm
from pidcore.pipeline.case_study import (MAX_UPLOAD_BYTES, CaseInputError, analyse, check_question, closest_task,
                                         image_dependence, read_image)
from pidcore.pipeline.settings import DEFAULT_ESTIMATOR
from pidcore.shipped import DEFAULT_DB, MODELS
from pidcore.store import read_atoms, read_run_questions, read_sample_table, reference_runs

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
    assert app.selectbox(key="case_task").value == "vision"
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
    for element in app.get("plotly_chart"):  # each title wrapped to its half-width column, not cut off
        title = json.loads(element.proto.spec)["layout"]["title"]
        usable = LEGEND_LAYOUT_PX // 2 - sum(MARGIN_PX.values())
        for text, size in ((title["text"], 18), (title["subtitle"]["text"], 12)):
            assert max(len(line) for line in text.split("<br>")) * size * WIDE_CHARACTER_EM <= usable, text
        assert title["text"].count("<br>") + title["subtitle"]["text"].count("<br>") >= 1
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


def _run_other(text: str) -> str:
    """Type `text` as another model, press Run, and return what its column says after 'could not be run: '."""
    app = _page()
    app.checkbox(key="case_example").check().run()
    app.multiselect(key="case_models").set_value([]).run()
    app.text_input(key="case_other").input(text).run()
    app.button(key="case_run").click().run()
    assert not app.exception
    errors = [error.value for error in app.error if "could not be run: " in error.value]
    assert len(errors) == 1, [error.value for error in app.error]
    return errors[0].split("could not be run: ", 1)[1]


def test_another_model_outside_the_results_folders_says_one_thing_whatever_the_path_is(tmp_path, monkeypatch):
    monkeypatch.setenv("PIDCORE_RESULTS_DIRS", str(tmp_path / "results"))
    (tmp_path / "results").mkdir()
    (tmp_path / "a-file").write_text("{}")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-model").mkdir()
    (tmp_path / "a-model" / "config.json").write_text('{"model_type": "llava"}')
    typed = ["/etc", "/etc/passwd", str(tmp_path / "missing"), str(tmp_path / "a-file"), str(tmp_path / "a-folder"),
             str(tmp_path / "a-model"), str(tmp_path / "results" / ".." / "a-model"), "~", "../../etc"]
    messages = {_run_other(text) for text in typed}
    assert len(messages) == 1, messages
    message = messages.pop()
    assert "cannot load model" in message and "PIDCORE" in message
    for leak in ("Unrecognized", "JSON", "Repo id", "etc", "passwd", str(tmp_path)):
        assert leak not in message


def test_another_model_inside_the_results_folders_loads_and_a_hub_id_goes_to_the_hub(tmp_path, monkeypatch):
    import shutil

    from pidcore.dashboard import live

    monkeypatch.setenv("PIDCORE_RESULTS_DIRS", str(tmp_path))
    shutil.copytree(MODELS / "llava-s", tmp_path / "llava-s")
    assert live.other_model(str(tmp_path / "llava-s")) == str((tmp_path / "llava-s").resolve())
    assert live.other_model(str(MODELS / "llava-s")) == str((MODELS / "llava-s").resolve())  # the shipped zoo
    asked = []

    def fake_download(repo_id, **options):
        asked.append(repo_id)
        raise OSError(f"offline, and the cache is {tmp_path}")

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_download)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").mkdir()
    monkeypatch.chdir(tmp_path)  # a relative folder of the hub id's name exists here: it is never read as one
    with pytest.raises(ValueError, match="cannot load model 'etc/passwd' from the hub") as raised:
        live.other_model("etc/passwd")
    assert asked == ["etc/passwd"] and str(tmp_path) not in str(raised.value)
    app = _page()
    app.checkbox(key="case_example").check().run()
    app.multiselect(key="case_models").set_value([]).run()
    app.text_input(key="case_other").input(str(tmp_path / "llava-s")).run()
    app.button(key="case_run").click().run()
    assert not app.exception and not app.error
    assert len(app.get("plotly_chart")) == 3  # scored among the shipped runs of the folder's name, llava-s


def test_a_stored_sample_with_garbage_probabilities_is_explained(tmp_path, monkeypatch):
    import duckdb

    from pidcore.store import SampleRow, register_run, write_samples

    monkeypatch.setenv("PIDCORE_RESULTS_DIRS", str(tmp_path))
    image = _png(Image.new("RGB", (8, 8), (0, 0, 255)))
    for garbage in (b"garbage", b"", b"\x93NUMPY\x01\x00"):
        db = tmp_path / f"garbage{len(garbage)}.duckdb"
        register_run(db, run_id="r", model="llava-s", family="llava", task="t", checkpoint="final", step=None,
                     stage=None, n_layers=2, settings={})
        write_samples(db, [SampleRow("r", "s0", 0, 0, np.zeros(4, np.float32), np.zeros(4, np.float32),
                                     np.full((3, 3, 2), 0.5, np.float32), np.full((3, 3), 0.9, np.float32),
                                     question="Which?", options=["a", "b"], image=image)])
        with duckdb.connect(str(db)) as connection:
            connection.table("samples").update({"probs": duckdb.ConstantExpression(garbage)})
        app = AppTest.from_file(APP, default_timeout=180)
        app.switch_page("pages/case_study.py")
        app.query_params.update(db=str(db), run="r", sample="s0")
        app.run()
        assert not app.exception, [error.value for error in app.exception]
        assert any("cannot be read" in info.value and "damaged" in info.value for info in app.info)
        assert any("Upload an image" in info.value for info in app.info)  # the page goes on without the sample


THREE = ["idefics3-s", "llava-s", "qwen2vl-s"]


def _three_models():
    """The page with the example image and three zoo models chosen (their runs share the 4-option tasks)."""
    app = _page()
    app.checkbox(key="case_example").check().run()
    app.multiselect(key="case_models").set_value(THREE).run()
    assert not app.exception and not app.error and not app.warning
    return app


def _scored_against(app) -> tuple[str, list[str]]:
    """The task the heading names, and the task each column's atoms say they are relative to."""
    headings = [heading.value for heading in app.subheader if "reference task" in heading.value]
    assert len(headings) == 1 and not [box for box in app.selectbox if box.key.startswith("case_task_")]
    columns = [match[1] for markdown in app.markdown
               if (match := re.search(r"relative to the reference task (\w+) \(", markdown.value))]
    return headings[0].rsplit(" ", 1)[1], columns


def test_every_column_uses_one_reference_task_chosen_again_when_the_question_changes_and_overridden_for_all():
    app = _three_models()
    app.button(key="case_run").click().run()
    assert not app.exception and not app.error
    assert app.selectbox(key="case_task").value == "vision"
    assert _scored_against(app) == ("vision", ["vision"] * 3)
    app.text_input(key="case_question").input("What colour is the sky?").run()  # a question of the language task
    assert app.selectbox(key="case_task").value == "language" and _scored_against(app)[0] == "language"
    app.selectbox(key="case_task").set_value("redundancy").run()
    app.checkbox(key="case_example").uncheck().run()  # a rerun without the box keeps the choice made
    app.checkbox(key="case_example").check().run()
    assert app.selectbox(key="case_task").value == "redundancy"
    app.button(key="case_run").click().run()
    assert not app.exception and not app.error
    assert _scored_against(app) == ("redundancy", ["redundancy"] * 3)
    runs = {name: reference_runs(DEFAULT_DB, name, 4, DEFAULT_ESTIMATOR) for name in THREE}
    used = {signature[2]: signature[6] for signature in app.session_state["case_results"]
            if signature[4] == "What colour is the sky?"}
    assert used == {str(MODELS / name): found[found["task"] == "redundancy"]["run_id"].iloc[0]
                    for name, found in runs.items()}
    app.text_input(key="case_question").input("What colour is the shape?").run()
    assert app.selectbox(key="case_task").value == "vision"  # a new question: chosen again, for every column


def test_a_tie_of_question_overlaps_goes_to_the_task_whose_answers_depend_most_on_the_image():
    question = "What colour is the circle?"
    runs = reference_runs(DEFAULT_DB, "llava-s", 4, DEFAULT_ESTIMATOR)
    questions = read_run_questions(DEFAULT_DB, list(runs["run_id"])).merge(runs)
    by_task = {task: questions[questions["task"] == task]["question"].tolist() for task in ("language", "vision")}
    # a tie: without a measure each order of the two tasks gets its first
    assert closest_task(question, by_task, {}) == "language"
    assert closest_task(question, dict(reversed(by_task.items())), {}) == "vision"
    dependence = image_dependence(read_atoms(DEFAULT_DB), THREE, DEFAULT_ESTIMATOR)
    assert dependence["vision"] > dependence["synergy"] > dependence["language"]
    assert closest_task(question, by_task, {"language": 1.0, "vision": 0.5}) == "language"  # the measure decides
    app = _three_models()
    app.text_input(key="case_question").input(question).run()
    assert app.selectbox(key="case_task").value == "vision" and _scored_against(app)[0] == "vision"
