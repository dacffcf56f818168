"""How long one "PNG + SVG" click takes, against a browser started per image (kaleido's default), same run.

  python benchmarks/exports.py [--clicks 5]

Draws the paper's S heatmap (26 models x 4 tasks, the largest chart the dashboard exports) as the button does
(pidcore.dashboard.export.images_zip: a PNG at 3x and an SVG in one zip). Baseline: the same two images from
plotly's to_image with no kaleido browser kept open, so each image starts and stops its own Chromium. Prints the
median seconds per click of each, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import kaleido  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from pidcore import store  # noqa: E402
from pidcore.analysis.regimes import final_rows  # noqa: E402
from pidcore.atoms import PAPER_ESTIMATOR  # noqa: E402
from pidcore.dashboard import export  # noqa: E402
from pidcore.dashboard.charts import heatmap  # noqa: E402
from pidcore.shipped import PAPER_DB  # noqa: E402


def paper_heatmap() -> go.Figure:
    """The breadth page's S heatmap of the paper's published atoms, styled for export."""
    atoms = store.read_atoms(str(PAPER_DB))
    final = final_rows(atoms[atoms["estimator"] == PAPER_ESTIMATOR])
    info = export.ChartInfo("S (synergy) by model and task", estimator=PAPER_ESTIMATOR, units="bits")
    return export.styled(heatmap(final, "s", "bits"), info)


def one_browser_per_image(figure: go.Figure) -> None:
    """The two images as plotly draws them when no kaleido browser is kept open."""
    for image_format in ("png", "svg"):
        figure.to_image(format=image_format, scale=export.IMAGE_SCALE if image_format == "png" else 1,
                        width=1100, height=figure.layout.height or export.PLOT_PX)


def timed(function, figure: go.Figure, clicks: int) -> list[float]:
    """Seconds of each of `clicks` calls."""
    times = []
    for _ in range(clicks):
        start = time.perf_counter()
        function(figure)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=5, help="clicks timed for each")
    args = parser.parse_args()
    if not export.browser_available():
        print(export.NO_BROWSER)
        return 1
    figure = paper_heatmap()
    baseline = timed(one_browser_per_image, figure, args.clicks)
    first = timed(lambda shown: export.images_zip(shown, "heatmap"), figure, 1)[0]
    ours = timed(lambda shown: export.images_zip(shown, "heatmap"), figure, args.clicks)
    kaleido.stop_sync_server(silence_warnings=True)
    print(f"{args.clicks} clicks each, {os.cpu_count()} cores; the paper's S heatmap as PNG (x{export.IMAGE_SCALE}) "
          f"+ SVG")
    print(f"{'a browser per image (baseline)':34s} median {statistics.median(baseline):6.2f} s")
    print(f"{'one browser kept open':34s} median {statistics.median(ours):6.2f} s (first click {first:.2f} s, which "
          f"starts it)")
    print(f"ratio baseline / ours: {statistics.median(baseline) / statistics.median(ours):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
