"""The house's boundaries (DESIGN section 3): SQL only in pidcore/store, Streamlit and Plotly only in
pidcore/dashboard, and one vocabulary in pidcore/atoms. Each check is also run on code that breaks the rule, so it
is shown to be able to fail."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from pidcore.atoms import ATOMS

ROOT = Path(__file__).resolve().parent.parent
SQL = re.compile(r"^\s*(SELECT|INSERT|CREATE|UPDATE|DELETE|DROP|ATTACH|DETACH|COPY|WITH|PRAGMA|ALTER|INSTALL|LOAD)\s")
UI_PACKAGES = ("streamlit", "plotly")
# Imports every pidcore module outside the given prefix (not __main__, which runs the command line), one at a time,
# and reports which module first pulls in each UI package.
IMPORT_PROBE = """
import importlib, json, pkgutil, sys
import pidcore
skip, extra = sys.argv[1], sys.argv[2:]
names = [m.name for m in pkgutil.walk_packages(pidcore.__path__, "pidcore.")
         if not m.name.startswith(skip) and m.name != "pidcore.__main__"]
culprits = {}
for name in ["pidcore", *names, *extra]:
    importlib.import_module(name)
    for package in ("streamlit", "plotly"):
        if package in sys.modules and package not in culprits:
            culprits[package] = name
print(json.dumps({"imported": len(names), "culprits": culprits}))
"""


def _python_files(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in ([root] if root.is_file() else root.rglob("*.py")))


def sql_literals(path: Path) -> list[str]:
    """String constants in a Python file that begin like an SQL statement (f-string parts included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)]


def test_no_sql_literal_outside_the_store():
    outside = [path for path in _python_files(ROOT / "pidcore", ROOT / "pages", ROOT / "app.py", ROOT / "tests",
                                              ROOT / "benchmarks")
               if ROOT / "pidcore" / "store" not in path.parents]
    found = {str(path.relative_to(ROOT)): literals for path in outside if (literals := sql_literals(path))}
    assert found == {}


def test_the_sql_scan_finds_the_store_statements():
    store = ROOT / "pidcore" / "store"
    first_words = {name: {literal.split()[0] for literal in sql_literals(store / name)}
                   for name in ("read.py", "write.py", "schema.py")}
    assert "SELECT" in first_words["read.py"] and "INSERT" in first_words["write.py"]
    assert "CREATE" in first_words["schema.py"]


def _import_probe(skip: str, *extra: str) -> dict:
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE, skip, *extra], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pidcore_outside_the_dashboard_imports_no_streamlit_or_plotly():
    report = _import_probe("pidcore.dashboard")
    assert report["imported"] >= 50
    assert report["culprits"] == {}


def test_the_import_probe_catches_a_ui_import():
    report = _import_probe("pidcore.dashboard", "pidcore.dashboard.charts")
    assert report["culprits"] == {"plotly": "pidcore.dashboard.charts"}


def vocabulary_redefinitions(path: Path) -> list[str]:
    """Places that build the atom names or the option letters themselves instead of importing pidcore.atoms."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) == len(ATOMS) and \
                {getattr(element, "value", None) for element in node.elts} == set(ATOMS):
            found.append(f"line {node.lineno}: atom names")
        if isinstance(node, ast.Attribute) and node.attr == "ascii_uppercase":
            found.append(f"line {node.lineno}: letters from string.ascii_uppercase")
        if isinstance(node, ast.Constant) and node.value in ("ABCD", "ABCDEF"):
            found.append(f"line {node.lineno}: letters as a literal")
    return found


def test_atom_names_and_letters_come_from_one_place():
    files = [path for path in _python_files(ROOT / "pidcore", ROOT / "pages", ROOT / "app.py", ROOT / "benchmarks")
             if path != ROOT / "pidcore" / "atoms.py"]
    found = {str(path.relative_to(ROOT)): places for path in files if (places := vocabulary_redefinitions(path))}
    assert found == {}
    kinds = {place.split(": ")[1] for place in vocabulary_redefinitions(ROOT / "pidcore" / "atoms.py")}
    assert kinds == {"atom names", "letters from string.ascii_uppercase"}
