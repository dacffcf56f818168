"""A Streamlit server on a loopback port and Debian's Chromium driven by Playwright, shared by the browser test and
the dashboard benchmark (DESIGN.md section 6: the flags, a fresh profile, a tall viewport)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def streamlit_server(script: Path, start_timeout_s: float = 90, cwd: Path = ROOT):
    """`streamlit run SCRIPT` headless on loopback, from `cwd` (whose .streamlit/config.toml applies); yields its URL
    once /_stcore/health answers."""
    port = free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                                "--server.address", "127.0.0.1", "--server.port", str(port),
                                "--browser.gatherUsageStats", "false"], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, start_timeout_s)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline and process.poll() is None:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not start within {timeout_s:.0f} s (exit code {process.poll()})")


@contextmanager
def chromium_page(playwright, init_script: str | None = None):
    """A page in a fresh persistent Chromium profile, 1400 x 2400 (Streamlit scrolls inside its own container)."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=FLAGS, viewport={"width": 1400, "height": 2400})
        try:
            if init_script:
                context.add_init_script(init_script)
            yield context.new_page()
        finally:
            context.close()


def settle(page) -> None:
    """Wait until the app has drawn and no script run is in progress."""
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
