"""The course's colours: one per class label, so that a class looks the same in every notebook, figure and
prediction overlay (index 0, background, is black), and a set for telling instances apart.

The colours stay apart for readers with colour-vision deficiency: labels 1-7 are Okabe and Ito's palette, 8-15
Paul Tol's "muted" one, in an order where neighbouring labels stay at least 20 CIELAB units apart (Delta E 1976)
for normal vision and simulated protanopia and deuteranopia (``simulate``: Machado et al. 2009, severity 1).
"""

from __future__ import annotations

import math

PALETTE = ["#000000",
           "#d55e00", "#009e73", "#0072b2", "#e69f00", "#cc79a7", "#56b4e9", "#f0e442",  # Okabe-Ito
           "#44aa99", "#332288", "#117733", "#88ccee", "#999933", "#aa4499", "#ddcc77", "#882255"]  # Tol muted

# Instances of one picture, chosen so that touching ones differ (``training.overlays``): colours that stand out on
# dark and light images alike (no black, no dark blue), the first three far apart for every simulated vision.
INSTANCE_PALETTE = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#d55e00", "#cc79a7"]

# Machado, Oliveira and Fernandes (2009), severity 1.0: linear-RGB matrices that simulate each dichromacy.
CVD_MATRICES = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                   (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                     (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602),
                   (0.004733, 0.691367, 0.303900)),
}


def colour(label: int) -> str:
    """The colour of class ``label`` (the palette repeats after 16 labels)."""
    return PALETTE[int(label) % len(PALETTE)]


def rgb(hex_colour: str) -> tuple[int, int, int]:
    """``"#d55e00"`` -> ``(213, 94, 0)``."""
    h = hex_colour.lstrip("#")
    if len(h) != 6:
        raise ValueError(f"not a colour of the form #rrggbb: {hex_colour!r}")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(hex_colour: str) -> float:
    """WCAG relative luminance, 0 (black) to 1 (white)."""
    r, g, b = (_linear(c / 255) for c in rgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_colour_on(hex_colour: str) -> str:
    """Black or white, whichever contrasts more with a background of ``hex_colour`` (WCAG contrast ratio)."""
    return "#000000" if luminance(hex_colour) > 0.179 else "#ffffff"


def simulate(hex_colour: str, vision: str | None) -> tuple[float, float, float]:
    """The colour as CIELAB (D65) for normal vision (``None``) or one of ``CVD_MATRICES``' dichromacies."""
    lin = [_linear(c / 255) for c in rgb(hex_colour)]
    if vision is not None:
        if vision not in CVD_MATRICES:
            raise ValueError(f"unknown vision {vision!r}; known: None, {', '.join(CVD_MATRICES)}")
        lin = [min(1.0, max(0.0, sum(m * v for m, v in zip(row, lin, strict=True)))) for row in CVD_MATRICES[vision]]
    x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def distance(a: str, b: str, vision: str | None = None) -> float:
    """How far apart two colours look (CIELAB Delta E 1976) with normal vision or a simulated dichromacy."""
    return math.dist(simulate(a, vision), simulate(b, vision))
