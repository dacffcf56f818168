"""Every stored text field of one crafted results database holds Markdown and HTML links, remote images, a bare URL
and KaTeX, each behind a marker of its own: in Debian's Chromium, no page of the app and no exported report fetches
anything from another host or renders a link or an image from that text, and the markers show as the text they are.

Skipped where Chromium (apt-get install chromium) or Playwright is missing.
"""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
import pytest

from pidcore import store
from pidcore.atoms import Atoms
from pidcore.dashboard.text import WORD_JOINER
from pidcore.datasets import shapes
from pidcore.shipped import DEFAULT_DB, RESULTS_DIRS_ENV
from pidcore.store import SampleRow, image_to_png, register_run, write_calibration, write_layer, write_samples
from tests.browser_harness import CHROMIUM, ROOT, chromium_page, settle, streamlit_server

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")

EVIL = "evil.example"
N_LAYERS = 4
REFERENCE_MODEL = "llava-s"  # a shipped model, so the case study runs it on the planted sample
# The demo run of REFERENCE_MODEL whose fitted networks and calibration the planted reference run reuses.
REFERENCE_TASK, REFERENCE_CHECKPOINT = "synergy", "stage2-step1500"


def planted(marker: str) -> str:
    """A text that would link and fetch if rendered as Markdown or HTML: Markdown and HTML links and images, a bare
    URL, a www. address and an e-mail address (autolinks) and KaTeX, after `marker`, every URL its own."""
    where = f"https://{EVIL}/{marker}"
    return (f'{marker}<a href="{where}/a">A</a>[L]({where}/l)![I]({where}/i.png)<img src={where}/j.png> '
            f"{where}/b www.{EVIL} mail@{EVIL} $x^2$")


FIELDS = ("model", "family", "task", "task2", "checkpoint1", "checkpoint2", "checkpoint3", "stage1", "stage2",
          "stage3", "estimator", "dataset", "name", "probes", "conventions", "mode", "stopped", "run", "sample",
          "question", "option1", "option2")
TEXT = {field: planted(f"ZQ{field}Q") for field in FIELDS}  # "ZQ" first: sorted before the shipped model's name


def shown(field: str) -> str:
    """What a reader sees where the field shows as its literal text (the first tag of it)."""
    return f'ZQ{field}Q<a href="https://{EVIL}/ZQ{field}Q/a">'


def crafted(folder: Path) -> Path:
    """Two checkpoints (a trajectory) of a planted model and task, and a run of the shipped REFERENCE_MODEL on
    another planted task with the fitted networks and calibration of its demo run (so the case study scores a
    sample in it), every name, setting, diagnostic and sample text planted."""
    db = folder / "marked.duckdb"
    settings = {"dataset": TEXT["dataset"], "name": TEXT["name"], "probes": TEXT["probes"],
                "probe_conventions": [TEXT["conventions"]]}
    for index, step in enumerate((100, 5000), start=1):
        run_id = f"{TEXT['run']}{index}"
        register_run(db, run_id=run_id, model=TEXT["model"], family=TEXT["family"], task=TEXT["task"],
                     checkpoint=TEXT[f"checkpoint{index}"], step=step, stage=TEXT[f"stage{index}"], n_layers=N_LAYERS,
                     settings=settings)
        write_run_rows(db, run_id, 2, index, [None] * (N_LAYERS + 1))
    reference = store.read_runs(DEFAULT_DB)
    demo = reference[(reference["model"] == REFERENCE_MODEL) & (reference["task"] == REFERENCE_TASK)
                     & (reference["checkpoint"] == REFERENCE_CHECKPOINT)]["run_id"].iloc[0]
    fitted = dict(store.fitted_estimators(DEFAULT_DB, demo, "batch-published"))
    run_id = f"{TEXT['run']}3"
    register_run(db, run_id=run_id, model=REFERENCE_MODEL, family=TEXT["family"], task=TEXT["task2"],
                 checkpoint=TEXT["checkpoint3"], step=1500, stage=TEXT["stage3"], n_layers=N_LAYERS,
                 settings={**settings, "probes": "clean", "probe_conventions": []})
    write_calibration(db, run_id, store.load_calibration(DEFAULT_DB, demo))
    write_run_rows(db, run_id, 2, 3, [fitted[layer] for layer in range(N_LAYERS + 1)])
    return db


def write_run_rows(db: Path, run_id: str, n_options: int, seed: int, fitted: list[bytes | None]) -> None:
    """Eight samples with planted ids, questions and options (the first with an image), and every layer's atoms with
    planted diagnostics and their pointwise atoms, under the planted estimator."""
    rng = np.random.default_rng(seed)
    ids = [f"{TEXT['sample']}{index}" for index in range(8)]
    image = image_to_png(shapes.render(2, random.Random(seed)))
    probs = np.full((3, N_LAYERS + 1, n_options), 1 / n_options, dtype=np.float32)
    write_samples(db, [SampleRow(run_id, sample_id, index, 0, np.zeros(4, np.float32), np.zeros(4, np.float32), probs,
                                 np.full((3, N_LAYERS + 1), 0.9, np.float32), question=TEXT["question"],
                                 options=[TEXT["option1"], TEXT["option2"]], image=image if index == 0 else None)
                       for index, sample_id in enumerate(ids)])
    diagnostics = {"marginal_gap_x1": 0.01, "marginal_gap_x2": 0.02, "sinkhorn_residual": 1e-8,
                   "sinkhorn_converged": True, "mode": TEXT["mode"], "stopped_because": TEXT["stopped"]}
    for layer in range(N_LAYERS + 1):
        pointwise = {atom: rng.normal(0.1, 0.05, len(ids)).tolist() for atom in ("r", "u1", "u2", "s")}
        write_layer(db, run_id=run_id, layer=layer, estimator=TEXT["estimator"],
                    atoms=Atoms(0.1 * layer, 0.02, 0.3 - 0.05 * layer, 0.06 * layer * seed), n_samples=len(ids),
                    accuracy=0.5 + 0.1 * seed, diagnostics=diagnostics, fitted=fitted[layer], pointwise=pointwise,
                    sample_ids=ids)


# Every attribute that makes a browser fetch or link; the audit walks shadow roots and same-origin frames too.
AUDIT = """() => {
  const attributes = ['href', 'src', 'srcset', 'xlink:href', 'action', 'formaction', 'poster', 'data', 'background'];
  const found = {remote: [], links: [], text: []};
  const walk = (root) => {
    for (const element of root.querySelectorAll('*')) {
      for (const name of attributes) {
        const value = element.getAttribute(name);
        if (value && value.includes('evil')) found.remote.push(`${element.tagName} ${name}=${value}`);
      }
      const style = element.getAttribute('style');
      if (style && style.includes('evil')) found.remote.push(`${element.tagName} style=${style}`);
      if (element.tagName.toLowerCase() === 'a' && /evil|ZQ/.test(element.textContent)) {
        found.links.push(element.outerHTML.slice(0, 300));
      }
      if (element.matches('input, textarea')) found.text.push(element.value);
      if (element.matches('svg text')) found.text.push(element.textContent);
      if (element.shadowRoot) walk(element.shadowRoot);
      if (element.tagName === 'IFRAME') {
        try { walk(element.contentDocument); } catch (error) { found.remote.push('a cross-origin frame'); }
      }
    }
    if (root.body) found.text.push(root.body.innerText);
  };
  walk(document);
  return {remote: found.remote, links: found.links, text: found.text.join('\\n')};
}"""


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """The crafted database, in a folder of its own."""
    return crafted(tmp_path_factory.mktemp("marked"))


@pytest.fixture(scope="module")
def server(database):
    """The app on a loopback port, opening results from the crafted database's folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RESULTS_DIRS_ENV, str(database.parent))
        with streamlit_server(ROOT / "app.py") as url:
            yield url


@pytest.fixture(scope="module")
def browser(server):
    """One tab whose every request is checked: those to another host than the server are refused and kept."""
    with sync_api.sync_playwright() as driver, chromium_page(driver) as page:
        outside: list[str] = []
        allowed = {"data", "blob", "about", "file"}  # file: the downloaded report, opened from disk

        def local(url: str) -> bool:
            return urlsplit(url).scheme in allowed or url.startswith(f"{server}/")

        def seen(request) -> None:
            if not local(request.url):
                outside.append(request.url)

        page.context.on("request", seen)
        page.context.route("**/*", lambda route: route.continue_() if local(route.request.url) else route.abort())
        page.goto(server)
        settle(page)
        yield page, outside


def audited(page, outside: list[str], fields: tuple[str, ...]) -> str:
    """Check what the page shows: no request left the machine, no link or remote resource holds planted text, and
    each of `fields` shows as its literal text. Returns the text shown."""
    audit = page.evaluate(AUDIT)
    assert outside == [] and audit["remote"] == [] and audit["links"] == [], (outside, audit["remote"],
                                                                               audit["links"])
    assert page.locator("[data-testid='stException']").count() == 0
    text = audit["text"].replace(WORD_JOINER, "")  # invisible: what a reader sees
    missing = [field for field in fields if shown(field) not in text]
    assert missing == [], missing
    return text


# The pages (path and URL parameters besides ?db=), the planted fields each must show as text, and a part of it that
# must be drawn (the depth page's samples opened by its link).
PAGES = {
    "overview": ("", {}, ("estimator", "task", "task2"), "What this database holds"),
    "heatmap": ("heatmap", {}, ("model", "task", "task2", "estimator"), "Family strategies"),
    "layers": ("layers", {"samples": "true", "diagnostics": "true"}, ("model", "task", "checkpoint2", "estimator"),
               "Samples behind ZQmodelQ"),
    "training": ("training", {}, ("model", "task", "stage1", "stage2", "estimator"), "begins"),
}
# What each page's exported report must show as text.
REPORTS = {"heatmap": ("model", "family", "task", "task2", "checkpoint2", "checkpoint3", "estimator", "mode",
                       "probes", "conventions"),
           "layers": ("model", "task", "checkpoint2", "estimator", "mode"),
           "training": ("model", "task", "checkpoint1", "checkpoint2", "stage1", "stage2", "estimator")}


@pytest.mark.parametrize("name", PAGES)
def test_planted_text_neither_links_nor_fetches_on_a_page_or_in_its_report(browser, server, database, name,
                                                                           tmp_path):
    page, outside = browser
    path, parameters, fields, drawn = PAGES[name]
    page.goto(f"{server}/{path}?{urlencode({'db': str(database), **parameters})}")
    settle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert drawn in audited(page, outside, fields)
    if name not in REPORTS:
        return
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Export report (HTML)").click()
    report = tmp_path / "report.html"
    download.value.save_as(report)
    page.goto(report.as_uri())
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    audited(page, outside, REPORTS[name])


def test_a_planted_sample_neither_links_nor_fetches_in_the_case_study(browser, server, database):
    page, outside = browser
    link = {"db": str(database), "run": f"{TEXT['run']}3", "sample": f"{TEXT['sample']}0"}
    page.goto(f"{server}/case-study?{urlencode(link)}")
    settle(page)
    page.get_by_role("button", name="Run").click()
    page.wait_for_selector("text=S (synergy):", timeout=180_000)
    settle(page)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
    shown_text = audited(page, outside, ("question", "option1", "option2", "task2", "checkpoint3", "estimator"))
    assert "This sample's atoms layer by layer" in shown_text


def test_the_audit_sees_a_planted_link_image_and_request(browser, server, database):
    """The checks can fail: an image and a link from planted text, put into the page by hand, are both found."""
    page, outside = browser
    page.goto(f"{server}/?{urlencode({'db': str(database)})}")
    settle(page)
    with page.expect_request(f"https://{EVIL}/y.png"):
        page.evaluate("html => document.body.insertAdjacentHTML('beforeend', html)",
                      f'<a href="https://{EVIL}/x">ZQ</a><img src="https://{EVIL}/y.png">')
    audit = page.evaluate(AUDIT)
    assert len(audit["remote"]) == 2 and len(audit["links"]) == 1
    assert f"https://{EVIL}/y.png" in outside
    outside.clear()
