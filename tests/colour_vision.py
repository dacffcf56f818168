"""Colour as a deuteranope sees it, and the CIEDE2000 difference between two colours (Sharma, Wu and Dalal 2005):
the measures the dashboard's palette is tested with."""

import math
import re

import numpy as np
from colorspacious import cspace_convert

# Machado, Oliveira and Fernandes (2009) at full severity, as colorspacious implements it.
DEUTERANOPIA = {"name": "sRGB1+CVD", "cvd_type": "deuteranomaly", "severity": 100}
_RGBA = re.compile(r"rgba?\(([^)]*)\)")


def rgb(colour: str, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """A Plotly colour ("#RRGGBB", "rgb(...)" or "rgba(...)", composited on `background`) as sRGB in [0, 1]."""
    if colour.startswith("#"):
        return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    parts = [float(part) for part in _RGBA.fullmatch(colour.replace(" ", "")).group(1).split(",")]
    alpha = parts[3] if len(parts) == 4 else 1.0
    return np.array(parts[:3]) / 255 * alpha + np.array(background) * (1 - alpha)


def as_deuteranope_lab(colour: str) -> np.ndarray:
    """CIELab of a colour as seen with deuteranopia."""
    seen = np.clip(cspace_convert(rgb(colour), DEUTERANOPIA, "sRGB1"), 0, 1)
    return cspace_convert(seen, "sRGB1", "CIELab")


def ciede2000(lab1, lab2) -> float:
    """The CIEDE2000 colour difference of two CIELab colours."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    mean_c = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(mean_c ** 7 / (mean_c ** 7 + 25 ** 7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    h1 = math.degrees(math.atan2(b1, a1)) % 360 if c1 else 0.0
    h2 = math.degrees(math.atan2(b2, a2)) % 360 if c2 else 0.0
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    big_dh = 2 * math.sqrt(c1 * c2) * math.sin(math.radians(dh / 2))
    mean_l, mean_cp = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        mean_h = h1 + h2
    elif abs(h1 - h2) <= 180:
        mean_h = (h1 + h2) / 2
    else:
        mean_h = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(mean_h - 30)) + 0.24 * math.cos(math.radians(2 * mean_h))
         + 0.32 * math.cos(math.radians(3 * mean_h + 6)) - 0.20 * math.cos(math.radians(4 * mean_h - 63)))
    rotation = -math.sin(math.radians(60 * math.exp(-((mean_h - 275) / 25) ** 2))) * 2 * math.sqrt(
        mean_cp ** 7 / (mean_cp ** 7 + 25 ** 7))
    s_l = 1 + 0.015 * (mean_l - 50) ** 2 / math.sqrt(20 + (mean_l - 50) ** 2)
    s_c, s_h = 1 + 0.045 * mean_cp, 1 + 0.015 * mean_cp * t
    terms = ((l2 - l1) / s_l, (c2 - c1) / s_c, big_dh / s_h)
    return math.sqrt(terms[0] ** 2 + terms[1] ** 2 + terms[2] ** 2 + rotation * terms[1] * terms[2])
