"""The package as a user installs it: a wheel built from this checkout, installed into fresh virtual environments
outside it. The core install profiles a model without Streamlit, Plotly or Ray; the dashboard extra at its declared
floor versions passes the AppTest suite and opens the shipped data from the installed copy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.request
import venv
from pathlib import Path

import pytest

import pidcore
from tests.colour_files import write_colour_task

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The tests that drive every page and widget through Streamlit's AppTest, and the exports that draw through plotly
# and kaleido (test_hostile_pages, which feeds those pages broken databases through the same APIs, is left out of the
# floor run to keep the suite short).
DASHBOARD_TESTS = ["test_app.py", "test_pages.py", "test_case_study.py", "test_dashboard_data.py", "test_exports.py"]
OPTIONAL = ["streamlit", "plotly", "kaleido", "ray", "accelerate"]


def _env() -> dict[str, str]:
    """This process's environment without what would lead an installed copy back to the checkout."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}


def _run(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command outside the checkout; a failure shows its output."""
    done = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def _new_venv(folder: Path, system_site_packages: bool = False) -> Path:
    """A fresh virtual environment; returns its bin folder."""
    venv.EnvBuilder(with_pip=True, system_site_packages=system_site_packages).create(folder)
    return folder / "bin"


def _pip_install(bin_dir: Path, cwd: Path, *requirements: str) -> None:
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-compile", *requirements], cwd)


def _floors(extra: str) -> dict[str, str]:
    """The declared floor of each requirement of an extra, from pyproject.toml: {name: version}."""
    floors = {}
    for requirement in PYPROJECT["project"]["optional-dependencies"][extra]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)", requirement)
        assert match, f"{extra} requirement {requirement!r} declares no floor (NAME>=VERSION)"
        floors[match[1]] = match[2]
    return floors


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel` builds from this checkout (in pip's isolated build environment)."""
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)], out)
    (built,) = out.glob("pidcore-*.whl")
    return built


def test_every_package_of_the_checkout_is_in_the_wheel_list():
    on_disk = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "pidcore").rglob("__init__.py")}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert on_disk <= listed, f"packages missing from pyproject.toml's list: {sorted(on_disk - listed)}"
    assert listed - on_disk == {"pidcore.app"}


def test_the_requirement_files_install_the_package_with_its_extras():
    def requirements(name: str) -> list[str]:
        lines = (REPO / name).read_text().splitlines()
        return [line for line in lines if line.strip() and not line.startswith("#")]

    assert requirements("requirements.txt") == ["-e .[dashboard]"]
    assert requirements("requirements-test.txt") == ["-e .[dashboard,scale,test]"]
    assert "torch==2.13.0" in PYPROJECT["project"]["dependencies"]


def test_the_core_wheel_profiles_a_model_without_the_dashboard_or_ray(wheel, tmp_path):
    bin_dir = _new_venv(tmp_path / "venv")
    _pip_install(bin_dir, tmp_path, str(wheel))
    pidcore_command = str(bin_dir / "pidcore")
    assert _run([pidcore_command, "--help"], tmp_path).stdout.startswith("usage: pidcore")
    assert _run([pidcore_command, "--version"], tmp_path).stdout.strip() == f"pidcore {pidcore.__version__}"

    probe = ("import importlib.util, json, pidcore, pidcore.shipped as shipped; "
             f"print(json.dumps({{'file': pidcore.__file__, 'db': str(shipped.DEFAULT_DB), "
             f"'db_found': shipped.DEFAULT_DB.is_file(), "
             f"'missing': [name for name in {OPTIONAL!r} if importlib.util.find_spec(name) is None]}}))")
    found = json.loads(_run([str(bin_dir / "python"), "-c", probe], tmp_path).stdout)
    assert found["missing"] == OPTIONAL
    assert Path(found["file"]).is_relative_to(tmp_path / "venv")
    assert Path(found["db"]).is_relative_to(tmp_path / "venv") and found["db_found"]

    _run([pidcore_command, "tiny-model", "--family", "llava", "--out", "model"], tmp_path)
    data = write_colour_task(tmp_path, "colours.jsonl", 12, lambda i: "What colour is the image?")
    profiled = _run([pidcore_command, "profile", "--model", "model", "--dataset", f"jsonl:{data}", "--db",
                     "results.duckdb", "--bootstrap", "0"], tmp_path)
    assert "accuracy" in profiled.stdout
    layers = ("from pidcore.store import read_atoms; "
              "print(sorted(read_atoms('results.duckdb')['layer'].tolist()))")
    assert _run([str(bin_dir / "python"), "-c", layers], tmp_path).stdout.strip() == "[0, 1, 2]"

    refused = subprocess.run([pidcore_command, "dashboard"], cwd=tmp_path, env=_env(), capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2
    assert "pip install 'pidcore[dashboard]'" in refused.stderr


@pytest.fixture(scope="module")
def floor_venv(tmp_path_factory) -> Path:
    """A virtual environment over this one's packages with the dashboard extra at its declared floors; its bin."""
    folder = tmp_path_factory.mktemp("floors")
    bin_dir = _new_venv(folder / "venv", system_site_packages=True)
    _pip_install(bin_dir, folder, *(f"{name}=={version}" for name, version in _floors("dashboard").items()))
    return bin_dir


def test_the_dashboard_extra_declares_floors_that_cover_the_apis_used():
    floors = _floors("dashboard")
    assert tuple(map(int, floors["streamlit"].split("."))) >= (1, 67)  # bind="query-params" arrived in 1.67
    assert set(floors) == {"streamlit", "plotly", "kaleido"}


def test_the_apptest_suite_passes_on_the_dashboard_floor_versions(floor_venv):
    floors = _floors("dashboard")
    versions = ("import importlib.metadata as metadata, json; "
                f"print(json.dumps({{name: metadata.version(name) for name in {sorted(floors)!r}}}))")
    assert json.loads(_run([str(floor_venv / "python"), "-c", versions], REPO).stdout) == floors
    tests = [str(REPO / "tests" / name) for name in DASHBOARD_TESTS]
    done = _run([str(floor_venv / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], REPO, 900)
    assert re.search(r"\d+ passed", done.stdout) and " failed" not in done.stdout, done.stdout[-2000:]


def test_the_installed_dashboard_opens_the_shipped_data_outside_the_checkout(wheel, floor_venv, tmp_path):
    _pip_install(floor_venv, tmp_path, "--no-deps", "--force-reinstall", str(wheel))
    script = ("from streamlit.testing.v1 import AppTest; import pidcore.shipped as shipped; "
              "app = AppTest.from_file(str(shipped.APP), default_timeout=120).run(); "
              "assert not app.exception, app.exception; "
              "print(shipped.APP); print(app.sidebar.selectbox(key='source').value); "
              "print({metric.label: metric.value for metric in app.metric})")
    app_path, database, metrics = _run([str(floor_venv / "python"), "-c", script], tmp_path).stdout.splitlines()[-3:]
    assert Path(app_path).is_relative_to(floor_venv.parent)
    assert database.startswith("Demo zoo")
    assert "'Models': '4'" in metrics and "'Rows': '0'" not in metrics, metrics

    port = 8000 + os.getpid() % 1000
    server = subprocess.Popen([str(floor_venv / "pidcore"), "dashboard", "--server.headless", "true",
                               "--server.port", str(port)], cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert _healthy(port, server), server.stdout.read() if server.poll() is not None else "no answer"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not _answers(port), "`pidcore dashboard` stopped, but a Streamlit server it started still answers"


def _answers(port: int) -> bool:
    """Whether anything answers a Streamlit health check on the port now."""
    try:
        with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=5):
            return True
    except OSError:
        return False


def _healthy(port: int, server: subprocess.Popen, seconds: float = 60) -> bool:
    """Whether the server answers its health check within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=5) as answer:
                return answer.read() == b"ok"
        except OSError:
            time.sleep(0.5)
    return False
