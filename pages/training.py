"""A freshly started server answers its first request to /training with this file (Streamlit serves that request
from pages/ by file name): it runs the app, whose navigation then opens the page /training names, with no "Page not
found"."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"))
