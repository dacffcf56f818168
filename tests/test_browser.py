"""A real browser: `streamlit run app.py` on a loopback port, every page opened in Debian's Chromium by Playwright.

Screenshots land in test-artifacts/. Skipped where Chromium (apt-get install chromium) or Playwright is missing.
"""

import io
import random
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
def page(playwright):
    with chromium_page(playwright) as opened:
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
    page.wait_for_selector("text=U2 (language-unique):", timeout=180_000)
    settle(page)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "case_study.png"), full_page=True)


def test_a_link_to_a_page_opened_first_on_a_fresh_server_gets_the_apps_navigation(playwright):
    with streamlit_server(ROOT / "app.py") as url, chromium_page(playwright) as fresh:
        fresh.goto(f"{url}/layers?source=Published%3A+Xiu+et+al.+2026%2C+26+models")
        settle(fresh)
        navigation = fresh.inner_text("[data-testid='stSidebarNav']")
        assert "Depth: layer by layer" in navigation and "Breadth: models x tasks" in navigation, navigation
        fresh.goto(url)
        settle(fresh)
        assert "Overview" in fresh.inner_text("[data-testid='stSidebarNav']")
