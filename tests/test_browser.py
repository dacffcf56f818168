"""A real browser: `streamlit run app.py` on a loopback port, every page opened in Debian's Chromium by Playwright.

Screenshots land in test-artifacts/. Skipped where Chromium (apt-get install chromium) or Playwright is missing.
"""

import io
import random

import pytest

from pidcore.datasets import shapes
from tests.browser_harness import CHROMIUM, ROOT, chromium_page, settle, streamlit_server

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
ARTIFACTS = ROOT / "test-artifacts"
PAGES = {"overview": "", "heatmap": "heatmap", "layers": "layers", "training": "training"}


@pytest.fixture(scope="module")
def server():
    with streamlit_server(ROOT / "app.py") as url:
        yield url


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as playwright, chromium_page(playwright) as opened:
        yield opened


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_without_an_exception(server, page, name):
    page.goto(f"{server}/{PAGES[name]}")
    settle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
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
