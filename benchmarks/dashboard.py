"""How fast the dashboard answers a widget change and loads each page the first time, in a real browser, against
baselines measured in the same run.

  python benchmarks/dashboard.py [--steps 15] [--first-loads 2] [--load 0] [--against REV]

Serves `streamlit run app.py` on the shipped data and a bare one-slider Streamlit page on loopback ports, drives
Debian's Chromium with Playwright, and times:
  first loads:        each page (overview, breadth, depth, time, case study) opened once on a freshly started server
                      in a fresh browser profile, from the navigation's start until the browser has painted after the
                      page's last change (its script has finished and neither the page nor the websocket has changed
                      for 1.5 s); `--first-loads N` fresh servers per page;
  depth slider:       one step of the layer slider on the depth page;
  checkpoint scrub:   one step of the checkpoint scrubber on the time page;
  breadth atom:       choosing another atom in the heatmap page's selectbox.
Each timed change moves to a value not shown before in its view, so no step repeats an earlier one (whose rerun
would hit the caches): a slider steps from its end to its other end, the atom goes through the other three, and
then the next view is opened untimed (depth and time pages: the next model and task of the shipped database, from
llava-m on synergy; breadth page: units, clipping and source), until `--steps` changes are timed. A baseline revision
whose pages lack one of these URL parameters shows a view again.
Baselines, same run: the floor (steps of the only slider of a bare Streamlit page) and, with `--against REV`, the
same on the dashboard as it was at git revision REV (served from a temporary worktree), interleaved with ours first
load by first load and interaction by interaction (each interaction on a fresh server). A page that a checkout
answers with Streamlit's "Page not found" on a fresh server's first request shows as "not found".
Each change's time runs in the browser's own clock, from the key or pointer press until the page is idle again: the
server has sent the rerun's `script_finished` message and the browser has painted twice after the last message. The
target is a median of at most 0.25 s for each of the three. `--load N` runs N busy-looping processes meanwhile, as
other work on a shared laptop would.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlencode

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from playwright.sync_api import sync_playwright  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from tests.browser_harness import ROOT, chromium_page, settle, streamlit_server  # noqa: E402

TARGET_S = 0.25
SLIDER = "[data-testid='stSlider'] input[type='range']"
# The pages whose first load is timed, by their path under the app.
PAGES = {"overview": "", "breadth": "/heatmap", "depth": "/layers", "time": "/training", "case study": "/case-study"}
INTERACTIONS = ("depth slider", "checkpoint scrub", "breadth atom")
QUIET_MS = 1500  # a first load is over once neither the page nor the websocket has changed for this long
# The page's clock, its last message, its last change, the paint after that change, and whether a script runs.
STATE = ("[performance.now(), window.__frames.length ? window.__frames[window.__frames.length - 1].t : 0, "
         "window.__changed, window.__changePainted, !!document.querySelector('[data-testid=\"stStatusWidget\"]')]")
# Records, in the page's clock, every key or pointer press and every websocket message (with its bytes), and the
# moment the browser has painted twice after each message.
RECORDER = """
window.__keys = []; window.__frames = []; window.__painted = [];
for (const kind of ['keydown', 'pointerdown']) {
  document.addEventListener(kind, () => window.__keys.push(performance.now()), true);
}
const NativeSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new NativeSocket(...args);
  socket.addEventListener('message', (event) => {
    const at = performance.now();
    const keep = (bytes) => window.__frames.push({t: at, b: Array.from(new Uint8Array(bytes))});
    if (event.data instanceof Blob) { event.data.arrayBuffer().then(keep); } else { keep(event.data); }
    requestAnimationFrame(() => requestAnimationFrame(() => window.__painted.push(performance.now())));
  });
  return socket;
};
window.WebSocket.prototype = NativeSocket.prototype;
Object.assign(window.WebSocket, NativeSocket);
"""
# Also records the page time of the last change to the page's DOM and of the browser's second paint after it.
CHANGES = """
window.__changed = 0; window.__changePainted = 0;
new MutationObserver(() => {
  const at = performance.now();
  window.__changed = at;
  requestAnimationFrame(() => requestAnimationFrame(() => {
    if (window.__changed === at) { window.__changePainted = performance.now(); }
  }));
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""
FLOOR_APP = """
import streamlit as st
st.slider("value", 0, 100, 0, key="value")
st.write("a bare page")
"""


def _script_finished_at(frames: list[dict], after: float) -> float | None:
    """The page time of the first `script_finished` message received after `after`."""
    for frame in frames:
        if frame["t"] <= after:
            continue
        message = ForwardMsg()
        message.ParseFromString(bytes(frame["b"]))
        if message.WhichOneof("type") == "script_finished":
            return frame["t"]
    return None


def _one_change(page, press) -> float:
    """Seconds from the key press `press()` makes until the rerun has finished and the page has painted."""
    page.evaluate("window.__frames = []; window.__painted = []; window.__keys = []")
    press()
    deadline = time.time() + 60
    while time.time() < deadline:
        page.wait_for_timeout(50)
        keys, frames = page.evaluate("window.__keys"), page.evaluate("window.__frames")
        finished = _script_finished_at(frames, keys[-1]) if keys else None
        if finished is None:
            continue
        page.wait_for_timeout(150)
        painted = page.evaluate("window.__painted")
        last = max([finished, *(f["t"] for f in page.evaluate("window.__frames"))])
        after = [t for t in painted if t >= last]
        if after:
            return (after[0] - keys[0]) / 1000
    raise RuntimeError(f"the rerun did not finish within 60 s (keys {keys}, {len(frames)} messages)")


def _slider_walk(page, limit: int) -> list[float]:
    """Step the page's first slider one key press at a time from where it stands to its farther end, so that every
    step shows a value new to this view; at most `limit` steps."""
    thumb = page.locator(SLIDER).first
    low, high, value, step = (float(v) for v in thumb.evaluate("e => [e.min, e.max, e.value, e.step || 1]"))
    key, room = ("ArrowLeft", value - low) if value - low >= high - value else ("ArrowRight", high - value)
    times = []
    for _ in range(min(limit, round(room / step))):
        thumb.focus()
        times.append(_one_change(page, lambda: page.keyboard.press(key)))
        settle(page)
        thumb = page.locator(SLIDER).first
        now = float(thumb.evaluate("e => e.value"))
        if now == value:
            raise RuntimeError(f"the slider did not move from {value} on {key}")
        value = now
    return times


def _select_walk(page, label: str, limit: int) -> list[float]:
    """Choose, one at a time, each option of a selectbox not yet shown in this view; at most `limit`."""
    shown, times = set(), []
    while len(times) < limit:
        box = page.locator(f"input[role='combobox'][aria-label='{label}']").first
        shown.add(box.input_value())
        box.click()
        page.locator("[role='option']").first.wait_for()
        fresh = [option for option in page.locator("[role='option']").all() if option.inner_text() not in shown]
        if not fresh:
            page.keyboard.press("Escape")
            break
        times.append(_one_change(page, fresh[0].click))
        settle(page)
    return times


def _walk_views(page, url: str, views: list[str], walk, steps: int) -> list[float]:
    """Open each view in turn (untimed) and time the changes `walk(page, limit)` makes there, until `steps`."""
    times = []
    for view in views:
        if len(times) >= steps:
            break
        _open(page, url + view)
        times += walk(page, steps - len(times))
    if len(times) < steps:
        print(f"only {len(times)} of {steps} changes timed: the {len(views)} views have no more distinct values")
    return times


def _open(page, url: str) -> None:
    page.goto(url)
    settle(page)
    page.wait_for_timeout(500)


def _busy() -> None:
    while True:
        pass


def zoo_views(root: Path) -> list[tuple[str, str]]:
    """The (model, task) pairs of the checkout's shipped database, llava-m on synergy first."""
    from pidcore.store import read_runs

    runs = read_runs(root / "data" / "results.duckdb")
    pairs = sorted(set(zip(runs["model"], runs["task"])))
    return sorted(pairs, key=lambda pair: pair != ("llava-m", "synergy"))


def interaction_views(root: Path) -> dict[str, tuple[list[str], Callable]]:
    """Each timed interaction's views (paths under the app, opened in turn) and the walk that times changes in one."""
    from pidcore.shipped import SHIPPED_DBS

    pairs = zoo_views(root)
    breadth = [{"source": source, "units": units, "clip": clip}
               for source, units, clip in itertools.product(SHIPPED_DBS, ("bits", "fraction"), ("false", "true"))]
    return {"depth slider": ([f"/layers?{urlencode({'model': m, 'task': t})}" for m, t in pairs], _slider_walk),
            "checkpoint scrub": ([f"/training?{urlencode({'train_model': m, 'train_task': t})}" for m, t in pairs],
                                 _slider_walk),
            "breadth atom": ([f"/heatmap?{urlencode(view)}" for view in breadth],
                             lambda page, limit: _select_walk(page, "Atom", limit))}


def measure_interaction(playwright, root: Path, name: str, steps: int) -> list[float]:
    """Times of one interaction on the dashboard of the checkout at `root` (a fresh server), in seconds, each change
    to a value not shown before in its view."""
    views, walk = interaction_views(root)[name]
    with streamlit_server(root / "app.py", cwd=root) as url, chromium_page(playwright, RECORDER) as page:
        # A baseline checkout older than pages/NAME.py shows Streamlit's "Page not found" dialog (which takes the
        # keyboard) on the first request to a fresh server that names a page, so every checkout opens the app first.
        _open(page, url)
        return _walk_views(page, url, views, walk, steps)


def measure_floor(playwright, steps: int) -> list[float]:
    """Times of one slider step on a bare Streamlit page (a slider of 0 to 100: every step a new value), seconds."""
    with tempfile.TemporaryDirectory() as folder:
        floor_app = Path(folder) / "floor.py"
        floor_app.write_text(FLOOR_APP)
        with streamlit_server(floor_app) as url, chromium_page(playwright, RECORDER) as page:
            _open(page, url)
            return _slider_walk(page, steps)


def first_load(playwright, root: Path, path: str) -> float | None:
    """Seconds from navigating to the page (a path under the app) on a freshly started server, in a fresh browser
    profile, until the browser has painted after the page's last change; None where the checkout answers that
    first request with Streamlit's "Page not found" (which checkouts older than pages/NAME.py do)."""
    with streamlit_server(root / "app.py", cwd=root) as url, chromium_page(playwright, RECORDER + CHANGES) as page:
        page.goto(url + path)
        deadline, seen, finished = time.time() + 180, 0, False
        while time.time() < deadline:
            page.wait_for_timeout(250)
            fresh = page.evaluate(f"window.__frames.slice({seen})")
            seen += len(fresh)
            finished = finished or _script_finished_at(fresh, -1.0) is not None
            now, last_message, changed, painted, running = page.evaluate(STATE)
            if finished and not running and painted >= changed and now - max(last_message, changed) >= QUIET_MS:
                return None if page.get_by_text("Page not found").count() else painted / 1000
    raise RuntimeError(f"{path or '/'} did not finish loading within 180 s")


@contextmanager
def checkout(revision: str):
    """The repository at `revision` in a temporary git worktree, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="dashboard-baseline-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision], check=True,
                   capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=True,
                       capture_output=True)


def report(results: dict[str, list[float]], floor: list[float], baseline: dict[str, list[float]] | None,
           revision: str | None) -> None:
    """Print each interaction's times against the floor and the baseline revision, and whether the target is met."""
    header = f"{'interaction':18s} {'changes':>7s} {'median s':>9s} {'p90 s':>7s} {'max s':>7s} {'vs floor':>9s}"
    if baseline:
        header += f" {'at ' + revision[:10]:>14s} {'speed-up':>9s}"
    print(header + "  target")
    met = True
    for name, times in results.items():
        median = statistics.median(times)
        line = (f"{name:18s} {len(times):7d} {median:9.3f} {sorted(times)[int(0.9 * (len(times) - 1))]:7.3f} "
                f"{max(times):7.3f} {median / statistics.median(floor):8.1f}x")
        if baseline:
            before = statistics.median(baseline[name])
            line += f" {before:12.3f} s {before / median:8.1f}x"
        met &= median <= TARGET_S
        print(line + ("  met" if median <= TARGET_S else "  NOT met"))
    print(f"{'floor (bare page)':18s} {len(floor):7d} {statistics.median(floor):9.3f}")
    print(f"target: median <= {TARGET_S} s per interaction: {'met' if met else 'NOT met'}")


def report_first_loads(loads: dict[str, list[float | None]], baseline: dict[str, list[float | None]] | None,
                       revision: str | None) -> None:
    """Print each page's first-load times (fresh server, fresh profile), and the baseline revision's."""
    header = f"\n{'first load':18s} {'median s':>9s}  {'each':22s}"
    print((header + (f" {'at ' + revision[:10]:>9s}  each" if baseline else "")).rstrip())
    for name, times in loads.items():
        line = f"{name:18s} {_median_text(times):>9s}  {_each(times):22s}"
        if baseline:
            line += f" {_median_text(baseline[name]):>9s}  {_each(baseline[name])}"
        print(line.rstrip())


def _median_text(times: list[float | None]) -> str:
    """The median of the times as text, or "not found" where the checkout answered with "Page not found"."""
    found = [t for t in times if t is not None]
    return f"{statistics.median(found):.2f}" if found else "not found"


def _each(times: list[float | None]) -> str:
    """The times to two decimals, comma-separated ("-" for "Page not found")."""
    return ", ".join("-" if t is None else f"{t:.2f}" for t in times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15, help="changes timed per interaction")
    parser.add_argument("--first-loads", type=int, default=2, help="first loads timed per page (0: none)")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes to run meanwhile")
    parser.add_argument("--against", default=None, help="also time the dashboard at this git revision")
    args = parser.parse_args()
    burners = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for burner in burners:
        burner.start()
    try:
        with sync_playwright() as playwright, (checkout(args.against) if args.against else nullcontext()) as old:
            loads = {name: [] for name in PAGES}
            old_loads = {name: [] for name in PAGES} if old else None
            for _ in range(args.first_loads):  # the two checkouts' first loads interleaved, page by page
                for name, path in PAGES.items():
                    loads[name].append(first_load(playwright, ROOT, path))
                    if old:
                        old_loads[name].append(first_load(playwright, old, path))
            floor = measure_floor(playwright, args.steps)
            results, baseline = {}, {} if old else None
            for number, name in enumerate(INTERACTIONS):  # the two checkouts interleaved, interaction by interaction
                checkouts = [(ROOT, results), *([(old, baseline)] if old else [])]
                for root, into in checkouts if number % 2 == 0 else checkouts[::-1]:
                    into[name] = measure_interaction(playwright, root, name, args.steps)
    finally:
        for burner in burners:
            burner.terminate()
    print(f"{args.steps} changes each, {args.load} busy processes alongside, {os.cpu_count()} cores")
    report(results, floor, baseline, args.against)
    if args.first_loads:
        report_first_loads(loads, old_loads, args.against)
    return 0


if __name__ == "__main__":
    sys.exit(main())
