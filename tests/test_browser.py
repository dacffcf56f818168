"""A real browser: `streamlit run app.py` on a loopback port, every page opened in Debian's Chromium by Playwright.

Screenshots land in test-artifacts/. Skipped where Chromium (apt-get install chromium) or Playwright is missing.
"""

import io
import random
import re
import zipfile
from urllib.parse import urlencode

import pytest

from pidcore.datasets import shapes
from tests.browser_harness import CHROMIUM, ROOT, chromium_page, settle, streamlit_server

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
ARTIFACTS = ROOT / "test-artifacts"
PAGES = {"overview": "", "heatmap": "heatmap", "layers": "layers", "training": "training"}
PAPER = ("source", "Published: Xiu et al. 2026, 26 models")
# The shipped paper database on every page, and the demo zoo compared with it; with a text each view must show.
PAPER_VIEWS = {
    "paper_overview": ("", [PAPER], "Models"),
    "paper_heatmap": ("heatmap", [PAPER], "synergy-driven"),
    "paper_layers": ("layers", [PAPER, ("model", "InternVL3-2B"), ("task", "MMBench"), ("depth", "true")]
                     + [("overlay", f"{model} · MMBench · final")
                        for model in ("LLaVA-1.5-7B", "LLaVA-1.5-13B", "Qwen2.5-VL-3B")], "compared"),
    "paper_training": ("training", [PAPER, ("train_model", "LLaVA-1.5-7B"), ("train_task", "MMBench"),
                                    ("train_overlay", "LLaVA-1.5-13B · MMBench")], "a stage-2 rise"),
    "zoo_layers_with_paper": ("layers", [("compare", "true"), ("depth", "true"), ("model", "llava-m"),
                                         ("task", "synergy"), ("overlay", "LLaVA-1.5-7B (paper) · MMBench · final"),
                                         ("overlay", "Qwen2.5-VL-3B (paper) · MMBench · final")], "(paper)"),
    "zoo_training_with_paper": ("training", [("compare", "true"), ("train_model", "llava-s"),
                                             ("train_task", "synergy"),
                                             ("train_overlay", "LLaVA-1.5-7B (paper) · MMBench")], "stage progress"),
}


@pytest.fixture(scope="module")
def server():
    with streamlit_server(ROOT / "app.py") as url:
        yield url


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def page(playwright, server):
    """One browser tab, on the app's root first."""
    with chromium_page(playwright) as opened:
        opened.goto(server)
        settle(opened)
        yield opened


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_without_an_exception(server, page, name):
    page.goto(f"{server}/{PAGES[name]}")
    settle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("name", PAPER_VIEWS)
def test_the_papers_results_on_every_page_and_beside_the_zoo(server, page, name):
    path, parameters, expected = PAPER_VIEWS[name]
    page.goto(f"{server}/{path}?{urlencode(parameters)}")
    settle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    # The text may also sit in a data grid's hidden accessibility cells: wait for a visible copy.
    page.wait_for_selector(f"text={expected} >> visible=true", timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_an_uploaded_image_shows_its_atoms(server, page):
    page.goto(f"{server}/case-study")
    settle(page)
    buffer = io.BytesIO()
    shapes.render(2, random.Random(3)).save(buffer, "PNG")
    page.locator("input[type='file']").set_input_files(
        {"name": "shape.png", "mimeType": "image/png", "buffer": buffer.getvalue()})
    page.wait_for_selector("text=Press Run", timeout=60_000)
    choose(page, "Models", "llava-s")  # two columns side by side, their chart titles wrapped to fit
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("document.body.innerText.split('U2 (language-unique):').length > 2", timeout=180_000)
    settle(page)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "case_study.png"), full_page=True)


# Each page's URL path and the start of its heading.
FIRST_LINKS = {"layers?source=Published%3A+Xiu+et+al.+2026%2C+26+models": "Depth:", "heatmap?atom=S": "Breadth:",
               "training": "Time:", "case-study": "Case study:"}


@pytest.mark.parametrize("link", FIRST_LINKS)
def test_a_link_to_a_page_opened_first_on_a_fresh_server_lands_on_it_with_the_apps_navigation(playwright, link):
    with streamlit_server(ROOT / "app.py") as url, chromium_page(playwright) as fresh:
        fresh.goto(f"{url}/{link}")
        settle(fresh)
        fresh.wait_for_selector(f"h1:has-text('{FIRST_LINKS[link]}')", timeout=60_000)
        fresh.wait_for_timeout(2_000)  # the "Page not found" dialog, where sent, comes with the page's first run
        assert "Page not found" not in fresh.inner_text("body")
        navigation = fresh.inner_text("[data-testid='stSidebarNav']")
        assert "Depth: layer by layer" in navigation and "Breadth: models x tasks" in navigation, navigation
        fresh.goto(url)
        settle(fresh)
        assert "Overview" in fresh.inner_text("[data-testid='stSidebarNav']")


def shot(page, name: str) -> None:
    """Keep a screenshot of the whole page in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def choose(page, label: str, option: str) -> None:
    """Pick an option of the multiselect labelled `label`, by typing it as a user would."""
    page.locator("[data-testid='stMultiSelect']").filter(has_text=label).locator("input").click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option).first.click()
    page.keyboard.press("Escape")
    settle(page)


def legend_texts(page) -> list[str]:
    return page.locator(".js-plotly-plot .legendtext").all_text_contents()


def wait_for_legend(page, text: str) -> None:
    """Wait until a chart's legend shows `text`: the browser redraws a chart after the rerun that changed it ends."""
    page.wait_for_function("text => [...document.querySelectorAll('.js-plotly-plot .legendtext')]"
                           ".some(entry => entry.textContent === text)", arg=text, timeout=60_000)


def test_two_curves_overlaid_on_the_first_on_normalised_depth(server, page):
    page.goto(f"{server}/layers?model=llava-m&task=synergy")
    settle(page)
    page.get_by_text("Normalised depth").click()
    settle(page)
    for option in ("llava-s · synergy · stage2-step1500", "qwen2vl-s · synergy · stage2-step1500"):
        choose(page, "Compare with other curves", option)
        wait_for_legend(page, f"{option} · S")
    page.wait_for_selector("text=compared >> visible=true", timeout=60_000)
    legend = legend_texts(page)
    for model in ("llava-m", "llava-s", "qwen2vl-s"):
        assert f"{model} · synergy · stage2-step1500 · S" in legend, legend
    shot(page, "compare_layers")


def click_until_shown(page, point: tuple[float, float], shown, tries: int = 3) -> None:
    """Click a point until `shown` appears. A chart or grid may take a moment to take clicks after it is drawn; a
    click it took shows `shown` within a second or two, and a second click would undo the selection, so click again
    only after a long wait."""
    for _ in range(tries):
        page.mouse.click(*point)
        try:
            shown.wait_for(timeout=20_000)
            return
        except sync_api.TimeoutError:
            continue
    shown.wait_for(timeout=20_000)


def test_a_clicked_cell_lists_its_samples_and_one_opens_and_runs_in_the_case_study(server, page):
    page.goto(f"{server}/heatmap")
    settle(page)
    page.wait_for_selector(".js-plotly-plot .scatterlayer .point")
    cells = page.locator(".js-plotly-plot").first.locator(".scatterlayer .point")
    box = cells.nth(0).bounding_box()
    # the heading of a cell's samples (the depth page's expander also starts "Samples behind")
    heading = page.locator(r"text=/Samples behind .+ on .+ \(.+, layer \d+\)/ >> visible=true").first
    click_until_shown(page, (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2), heading)
    page.get_by_role("button", name=re.compile("Open the layers of")).wait_for(timeout=60_000)
    shot(page, "cell_samples")
    page.wait_for_selector("[data-testid='stDataFrame'] canvas", timeout=60_000)
    opener = page.get_by_role("button", name=re.compile("in the case study"))
    grid = page.locator("[data-testid='stDataFrame']").first.bounding_box()
    click_until_shown(page, (grid["x"] + 16, grid["y"] + 35 + 17), opener)  # the first sample row's selection box
    opener.click()
    page.wait_for_selector("text=Case study: one image and question, live", timeout=60_000)
    settle(page)
    assert page.get_by_label("Use the opened sample's stored image").is_checked()
    page.get_by_role("button", name="Run").click()
    page.wait_for_selector("text=S (synergy):", timeout=180_000)
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    shot(page, "sample_in_case_study")


def test_the_presentation_switch_enlarges_the_page_and_the_charts(server, page):
    page.goto(f"{server}/layers?model=llava-m&task=synergy")
    settle(page)
    normal = page.evaluate("getComputedStyle(document.documentElement).fontSize")
    page.get_by_text("Presentation").click()
    settle(page)
    page.wait_for_function("getComputedStyle(document.documentElement).fontSize === '22px'", timeout=30_000)
    charts = "[...document.querySelectorAll('.js-plotly-plot')]"
    # the browser redraws the charts after the rerun that sets the root font; on a loaded machine that comes later
    enlarged = f"{charts}.length > 0 && {charts}.every(g => g._fullLayout && g._fullLayout.font.size >= 20)"
    page.wait_for_function(enlarged, timeout=30_000)
    sizes = page.evaluate(f"{charts}.map(g => g._fullLayout.font.size)")
    assert normal == "16px" and sizes and min(sizes) >= 20
    shot(page, "presentation")
    page.goto(f"{server}/heatmap?presentation=true")
    settle(page)
    cell_text = ("[...document.querySelectorAll('.js-plotly-plot')].some(g => g.data && g.data[0].type === 'heatmap'"
                 " && g.data[0].textfont && g.data[0].textfont.size >= 18)")
    page.wait_for_function(cell_text, timeout=30_000)
    shot(page, "presentation_heatmap")
    page.goto(f"{server}/layers?model=llava-m&task=synergy&presentation=true")
    settle(page)
    page.get_by_text("Presentation").click()
    settle(page)


def test_exports_give_png_and_svg_in_one_click_a_csv_and_an_offline_report(server, page, tmp_path):
    page.goto(f"{server}/layers?model=llava-m&task=synergy")
    settle(page)
    page.wait_for_selector(".js-plotly-plot")
    with page.expect_download(timeout=120_000) as images:
        page.get_by_role("button", name="PNG + SVG").first.click()
    archive = zipfile.ZipFile(images.value.path())
    stem = "Atoms_layer_by_layer_logit_lens_llava-m_synergy_stage2-step1500_6_marked_batch-published_bits"
    assert sorted(archive.namelist()) == [f"{stem}.png", f"{stem}.svg"]
    assert "model llava-m" in archive.read(f"{stem}.svg").decode()
    with page.expect_download() as table:
        page.get_by_role("button", name="CSV").first.click()
    assert table.value.suggested_filename == f"{stem}.csv"
    with page.expect_download() as report:
        page.get_by_role("button", name="Export report (HTML)").click()
    text = open(report.value.path(), encoding="utf-8").read()
    assert "Rules applied" in text and "llava-m" in text and " [+" in text and "layers?" in text
    shot(page, "exports")
