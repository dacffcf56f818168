"""How fast the dashboard answers a widget change, in a real browser, against baselines measured in the same run.

  python benchmarks/dashboard.py [--steps 15] [--load 0] [--against REV]

Serves `streamlit run app.py` on the shipped data and a bare one-slider Streamlit page on loopback ports, drives
Debian's Chromium with Playwright, and times three interactions:
  depth slider:       one step of the layer slider on the depth page (llava-m, synergy);
  checkpoint scrub:   one step of the checkpoint scrubber on the time page (llava-m, synergy);
  breadth atom:       choosing another atom in the heatmap page's selectbox.
Baselines, same run: the floor (one step of the only slider of a bare Streamlit page) and, with `--against REV`,
the same three interactions on the dashboard as it was at git revision REV (served from a temporary worktree).
Each time runs in the browser's own clock, from the key or pointer press until the page is idle again: the server
has sent the rerun's `script_finished` message and the browser has painted twice after the last message. The
target is a median of at most 0.25 s for each of the three. `--load N` runs N busy-looping processes meanwhile, as
other work on a shared laptop would.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from playwright.sync_api import sync_playwright  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from tests.browser_harness import ROOT, chromium_page, settle, streamlit_server  # noqa: E402

TARGET_S = 0.25
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
FLOOR_APP = """
import streamlit as st
st.slider("value", 0, 10, 5, key="value")
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


def _slider_steps(page, selector: str, steps: int) -> list[float]:
    """Step a slider left to its start and back right, one key press at a time."""
    thumb = page.locator(selector).first
    thumb.focus()
    times, key = [], "ArrowLeft"
    for _ in range(steps):
        low, high, value = (float(v) for v in thumb.evaluate("e => [e.min, e.max, e.value]"))
        key = "ArrowRight" if value <= low else "ArrowLeft" if value >= high else key
        times.append(_one_change(page, lambda: page.keyboard.press(key)))
        settle(page)
        thumb = page.locator(selector).first
        thumb.focus()
    return times


def _select_steps(page, label: str, steps: int) -> list[float]:
    """Open a selectbox and click an option other than the current one, `steps` times."""
    times = []
    for _ in range(steps):
        box = page.locator(f"input[role='combobox'][aria-label='{label}']").first
        current = box.input_value()
        box.click()
        other = page.locator("[role='option']").filter(has_not_text=current).first
        other.wait_for()
        times.append(_one_change(page, other.click))
        settle(page)
    return times


def _open(page, url: str) -> None:
    page.goto(url)
    settle(page)
    page.wait_for_timeout(500)


def _busy() -> None:
    while True:
        pass


def measure_dashboard(playwright, root: Path, steps: int) -> dict[str, list[float]]:
    """Times of the three interactions on the dashboard of the checkout at `root`, in seconds."""
    slider = "[data-testid='stSlider'] input[type='range']"
    results = {}
    with streamlit_server(root / "app.py", cwd=root) as url, chromium_page(playwright, RECORDER) as page:
        # A baseline checkout older than pages/NAME.py shows Streamlit's "Page not found" dialog (which takes the
        # keyboard) on the first request to a fresh server that names a page, so every checkout opens the app first.
        _open(page, url)
        _open(page, f"{url}/layers?model=llava-m&task=synergy")
        results["depth slider"] = _slider_steps(page, slider, steps)
        _open(page, f"{url}/training?train_model=llava-m&train_task=synergy")
        results["checkpoint scrub"] = _slider_steps(page, slider, steps)
        _open(page, f"{url}/heatmap")
        results["breadth atom"] = _select_steps(page, "Atom", steps)
    return results


def measure_floor(playwright, steps: int) -> list[float]:
    """Times of one slider step on a bare Streamlit page, in seconds."""
    with tempfile.TemporaryDirectory() as folder:
        floor_app = Path(folder) / "floor.py"
        floor_app.write_text(FLOOR_APP)
        with streamlit_server(floor_app) as url, chromium_page(playwright, RECORDER) as page:
            _open(page, url)
            return _slider_steps(page, "[data-testid='stSlider'] input[type='range']", steps)


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
    header = f"{'interaction':18s} {'median s':>9s} {'p90 s':>7s} {'max s':>7s} {'vs floor':>9s}"
    if baseline:
        header += f" {'at ' + revision[:10]:>14s} {'speed-up':>9s}"
    print(header + "  target")
    met = True
    for name, times in results.items():
        median = statistics.median(times)
        line = (f"{name:18s} {median:9.3f} {sorted(times)[int(0.9 * (len(times) - 1))]:7.3f} {max(times):7.3f} "
                f"{median / statistics.median(floor):8.1f}x")
        if baseline:
            before = statistics.median(baseline[name])
            line += f" {before:12.3f} s {before / median:8.1f}x"
        met &= median <= TARGET_S
        print(line + ("  met" if median <= TARGET_S else "  NOT met"))
    print(f"{'floor (bare page)':18s} {statistics.median(floor):9.3f}")
    print(f"target: median <= {TARGET_S} s per interaction: {'met' if met else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15, help="changes timed per interaction")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes to run meanwhile")
    parser.add_argument("--against", default=None, help="also time the dashboard at this git revision")
    args = parser.parse_args()
    burners = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for burner in burners:
        burner.start()
    try:
        with sync_playwright() as playwright:
            floor = measure_floor(playwright, args.steps)
            results = measure_dashboard(playwright, ROOT, args.steps)
            baseline = None
            if args.against:
                with checkout(args.against) as old:
                    baseline = measure_dashboard(playwright, old, args.steps)
    finally:
        for burner in burners:
            burner.terminate()
    print(f"{args.steps} changes each, {args.load} busy processes alongside, {os.cpu_count()} cores")
    report(results, floor, baseline, args.against)
    return 0


if __name__ == "__main__":
    sys.exit(main())
