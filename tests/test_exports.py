"""Exported figures explain themselves: the title names model, task and estimator, the SVG legend's text is whole
and fits its slot in the widest common font, the PNG is drawn at slide resolution, one click gives both, the CSV
says what it holds, and the HTML report opens offline with its intervals and findings."""

import io
import re
import xml.etree.ElementTree as ElementTree
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFont

from pidcore.analysis.phases import detect_phases
from pidcore.atoms import ATOMS, LABELS
from pidcore.dashboard import charts, export
from pidcore.dashboard.report import report_html
from tests.browser_harness import CHROMIUM
from tests.test_colours import curve

WIDE_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # wider than Arial and Liberation Sans
SVG = "{http://www.w3.org/2000/svg}"
INFO = export.ChartInfo("Atoms layer by layer (logit lens)", "llava-m", "synergy", "stage2-step1500", "4 marked",
                        "batch-published", "bits")
needs_browser = pytest.mark.skipif(not export.browser_available(), reason="kaleido needs a local Chrome or Chromium")


def layer_figure(presentation: bool = False):
    frame = curve()
    return export.styled(charts.layer_curves(frame, 4, detect_phases(frame), "bits"), INFO, presentation)


@pytest.fixture(scope="module")
def svg_root():
    return ElementTree.fromstring(export.image_bytes(layer_figure(), "svg"))


def texts(root, css_class: str) -> list[ElementTree.Element]:
    return [element for element in root.iter(f"{SVG}text") if css_class in element.get("class", "")]


def translate_x(element: ElementTree.Element) -> float:
    return float(re.match(r"translate\(([-\d.]+)", element.get("transform")).group(1))


def test_the_title_and_file_name_name_model_task_checkpoint_layer_estimator_and_units():
    figure = layer_figure()
    words = ["llava-m", "synergy", "stage2-step1500", "4 marked", "batch-published", "bits"]
    assert all(word in figure.layout.title.subtitle.text for word in words)
    assert INFO.file_stem() == "Atoms_layer_by_layer_logit_lens_llava-m_synergy_stage2-step1500_4_marked_" \
                               "batch-published_bits"
    assert export.ChartInfo("a/b", model="../x y").file_stem() == "a_b_.._x_y"


@needs_browser
def test_the_exported_svg_title_holds_model_task_and_estimator(svg_root):
    title = " ".join("".join(element.itertext()) for element in texts(svg_root, "gtitle"))
    assert "Atoms layer by layer" in title
    for word in ("model llava-m", "task synergy", "estimator batch-published", "units bits"):
        assert word in title


@needs_browser
def test_the_svg_legend_text_is_complete_and_fits_its_slot_in_a_wide_font(svg_root):
    entries = [group for group in svg_root.iter(f"{SVG}g") if group.get("class") == "traces"
               and group.find(f"{SVG}text") is not None]
    names = ["".join(group.find(f"{SVG}text").itertext()) for group in entries]
    assert set(names) == {LABELS[atom] for atom in ATOMS} | {"poor diagnostics"}
    legend = next(group for group in svg_root.iter(f"{SVG}g") if group.get("class") == "legend")
    width = float(legend.find(f"{SVG}rect").get("width"))
    rows: dict[str, list[ElementTree.Element]] = {}
    for group in entries:
        rows.setdefault(group.get("transform").split(",")[1], []).append(group)
    size = export.TEXT_PX[False]
    font = ImageFont.truetype(WIDE_FONT, size)
    for row in rows.values():
        row.sort(key=translate_x)
        ends = [translate_x(group) for group in row[1:]] + [width]
        for group, end in zip(row, ends):
            text = group.find(f"{SVG}text")
            right = translate_x(group) + float(text.get("x")) + font.getlength("".join(text.itertext()))
            assert right <= end, ("".join(text.itertext()), right, end)


def test_chart_text_is_at_least_14_px_and_dark_and_larger_when_presenting():
    normal, presenting = (layer_figure(state).layout.template for state in (False, True))
    assert normal.layout.font.size >= 14 and presenting.layout.font.size >= 20
    red, green, blue = (int(export.TEXT_COLOUR[i:i + 2], 16) / 255 for i in (1, 3, 5))
    luminance = sum(w * (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
                    for w, c in zip((0.2126, 0.7152, 0.0722), (red, green, blue)))
    assert 1.05 / (luminance + 0.05) >= 7  # WCAG AAA against the white chart background
    assert normal.layout.xaxis.tickfont.color == export.TEXT_COLOUR
    assert presenting.data.scatter[0].line.width > export.LINE_PX[False]
    assert presenting.data.scatter[0].marker.size > export.MARKER_PX[False]


def test_heatmap_cell_text_grows_with_the_presentation_and_its_cells_with_it():
    frame = pd.DataFrame([{"model": model, "task": task, "r": 0.1, "u1": 0.2, "u2": 0.3, "s": 0.4, "s_lo": 0.3,
                           "s_hi": 0.5, "accuracy": 0.9} for model in ("m1", "m2", "m3") for task in ("t1", "t2")])
    normal, presenting = (export.styled(charts.heatmap(frame, "s", "bits"), INFO, state) for state in (False, True))
    assert normal.data[0].textfont.size == export.TEXT_PX[False] - 2
    assert presenting.data[0].textfont.size == export.TEXT_PX[True] - 2
    grown = (presenting.layout.height - presenting.layout.margin.t - presenting.layout.margin.b) / (
        normal.layout.height - normal.layout.margin.t - normal.layout.margin.b)
    assert grown >= (export.TEXT_PX[True] - 2) / (export.TEXT_PX[False] - 2) * 0.95


@needs_browser
def test_one_click_gives_png_and_svg_and_the_png_is_slide_sized():
    figure = layer_figure()
    archive = zipfile.ZipFile(io.BytesIO(export.images_zip(figure, INFO.file_stem())))
    assert sorted(archive.namelist()) == sorted(f"{INFO.file_stem()}.{kind}" for kind in ("png", "svg"))
    png = Image.open(io.BytesIO(archive.read(f"{INFO.file_stem()}.png")))
    assert png.size == (1100 * export.IMAGE_SCALE, figure.layout.height * export.IMAGE_SCALE)
    pixels = np.asarray(png.convert("L"))
    assert pixels.min() < 60 and pixels.max() > 240  # dark text on a white background, not a blank image


def test_the_csv_names_what_it_holds():
    numbers = curve()[["layer", "s", "s_lo", "s_hi"]]
    text = export.csv_bytes(numbers, INFO).decode()
    assert text.splitlines()[0].startswith("# Atoms layer by layer (logit lens): model llava-m")
    assert pd.read_csv(io.StringIO(text), comment="#").equals(numbers)


def report(link: str = "http://localhost:8501/layers?model=llava-m") -> str:
    rows = curve().assign(model="llava-m", task="synergy", checkpoint="final", n_samples=192)
    return report_html("Depth: llava-m on synergy", link, [layer_figure()], rows[["layer", *charts.BOUND_COLUMNS,
                                                                                    *ATOMS]],
                       ["Phases: the stated rule."], ["Phases of llava-m on synergy: fusion at 7-8."],
                       rows[["model", "task", "layer", "n_samples", "flags"]])


def test_the_report_holds_intervals_findings_rules_diagnostics_and_the_link_back():
    page = report()
    assert "+0.800 [+0.750, +0.850]" in page  # S at the top layers with its interval
    assert "Phases of llava-m on synergy: fusion at 7-8." in page and "Phases: the stated rule." in page
    assert "only 20 held-out samples" in page  # the diagnostics' flags
    assert "href='http://localhost:8501" not in page and "<code>/layers?model=llava-m</code>" in page
    shared = "https://lab.example.org/layers?model=llava-m"
    assert f"href='{shared}'" in report(shared)
    assert "<style>" in page and "font-family" in page
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page)  # nothing fetched from elsewhere


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "0.0.0.0", "app.localhost"])
def test_a_report_exported_from_a_loopback_address_names_the_view_by_its_path(host):
    page = report(f"http://{host}:8501/layers?model=llava-m")
    assert f"href='http://{host}" not in page and "<code>/layers?model=llava-m</code>" in page


def test_rows_without_intervals_or_diagnostics_get_a_sentence_not_an_empty_table():
    rows = curve().assign(model="LLaVA-1.5-7B (paper)", task="MMBench", checkpoint="final")
    for column in charts.BOUND_COLUMNS:
        rows[column] = float("nan")
    diagnostics = rows[["model", "task", "layer"]].assign(n_samples=float("nan"), letter_mass=float("nan"), flags="")
    page = report_html("Depth", "https://lab.example.org/layers", [layer_figure()],
                       rows[["layer", *charts.BOUND_COLUMNS, *ATOMS]], [], [], diagnostics)
    assert "no row shown has an interval" in page and "95% intervals in brackets" not in page
    assert f"{len(rows)} of {len(rows)} rows have no estimator diagnostics" in page
    assert page.count("<table") == 1  # the numbers only


def test_the_report_escapes_names_and_links():
    page = report("http://x/?a='><script>alert(1)</script>")
    assert "<script>alert(1)" not in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_report_opens_offline_in_a_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    path.write_text(report(), encoding="utf-8")
    fetched = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (fetched.append(route.request.url), route.abort()))
        page.goto(path.as_uri())
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        legend = page.locator(".legendtext").all_text_contents()
        browser.close()
    assert fetched == []
    assert LABELS["u2"] in legend
