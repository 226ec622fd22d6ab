"""12-lead ECG on standard grid paper, optionally with a heat map (e.g. Grad-CAM) behind it.

Paper: 25 mm/s, 10 mm/mV, 1 mm minor and 5 mm major grid, a 1 mV x 200 ms calibration pulse
at the start of every row. Layouts:

- ``"4x3"``: rows I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6, each column 2.5 s of the same
  10 s (as printed by ECG carts), plus a full 10 s rhythm strip (lead II by default);
- ``"12"``: one full-length row per lead.

The drawing is in millimetres of paper, so the file size is fixed by the layout:
:func:`figure_size_mm` (260 x 134 mm for 4x3, 260 x 278 mm for 12 rows at 10 s) and
``dpi`` (PNG pixels = mm / 25.4 * dpi, rounded down). The heat map is drawn per lead behind
the trace, transparent at 0 and red at 1, so the grid stays readable.
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from ecg_moco_tf.data.records import FS, LEADS  # noqa: E402

MM_PER_S, MM_PER_MV = 25.0, 10.0
LAYOUT_4X3 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
LAYOUTS = ("4x3", "12")
ROW_MM = {"4x3": 30.0, "12": 22.0}
LEFT_MM, TOP_MM, BOTTOM_MM = 10.0, 12.0, 2.0
HEAT = LinearSegmentedColormap.from_list(
    "ecg_heat", [(1, 1, 1, 0), (1, 0.75, 0, 0.45), (1, 0.3, 0, 0.65), (0.8, 0, 0, 0.8)])


def figure_size_mm(layout="4x3", seconds=10.0):
    """(width, height) of the paper in mm."""
    rows = 4 if layout == "4x3" else 12
    return LEFT_MM + seconds * MM_PER_S, TOP_MM + rows * ROW_MM[layout] + BOTTOM_MM


def figure_size_px(layout="4x3", dpi=150, seconds=10.0):
    """(width, height) in pixels of the PNG written at ``dpi``."""
    return tuple(int(mm / 25.4 * dpi) for mm in figure_size_mm(layout, seconds))   # as Agg


def _grid(ax, width, height):
    for step, colour, lw in ((1.0, "#f4c7c7", 0.25), (5.0, "#e39191", 0.6)):
        xs, ys = np.arange(0, width + 1e-6, step), np.arange(0, height + 1e-6, step)
        segs = [[(x, 0), (x, height)] for x in xs] + [[(0, y), (width, y)] for y in ys]
        ax.add_collection(LineCollection(segs, colors=colour, linewidths=lw, zorder=0))


def _panels(layout, rhythm_lead, n, fs):
    """(lead, first sample, last sample, x0 mm, baseline mm) per drawn panel."""
    seconds = n / fs
    width = seconds * MM_PER_S
    _, height = figure_size_mm(layout, seconds)
    row_h = ROW_MM[layout]
    base = [height - TOP_MM - (r + 0.5) * row_h for r in range(4 if layout == "4x3" else 12)]
    if layout == "12":
        return [(lead, 0, n, LEFT_MM, base[i]) for i, lead in enumerate(LEADS)]
    cols = len(LAYOUT_4X3[0])
    out = [(lead, c * n // cols, (c + 1) * n // cols, LEFT_MM + c * width / cols, base[r])
           for r, row in enumerate(LAYOUT_4X3) for c, lead in enumerate(row)]
    return out + [(rhythm_lead, 0, n, LEFT_MM, base[3])]


def plot_ecg(signal, out_base, cam=None, layout="4x3", fs=FS, title=None,
             formats=("png", "svg"), dpi=150, rhythm_lead="II", note=None):
    """Draw a (12, T) mV ECG (and a (12, T) map in [0, 1]) to ``out_base``.{png,svg}.

    Returns the written paths.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} not in {LAYOUTS}")
    signal = np.asarray(signal, float)
    if signal.ndim != 2 or signal.shape[0] != 12:
        raise ValueError(f"expected a (12, T) ECG, got shape {signal.shape}")
    if cam is not None and np.shape(cam) != signal.shape:
        raise ValueError(f"map shape {np.shape(cam)} differs from the ECG's {signal.shape}")
    n = signal.shape[1]
    width, height = figure_size_mm(layout, n / fs)
    fig = plt.figure(figsize=(width / 25.4, height / 25.4))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    ax.add_patch(plt.Rectangle((0, 0), width, height, color="#fff7f5", zorder=-1))
    _grid(ax, width, height)
    row_h = ROW_MM[layout]
    for lead, a, b, x0, y0 in _panels(layout, rhythm_lead, n, fs):
        li = LEADS.index(lead)
        x = x0 + np.arange(b - a) / fs * MM_PER_S
        if cam is not None:
            ax.imshow(np.asarray(cam)[li, a:b][None], extent=(x[0], x[-1], y0 - row_h / 2,
                      y0 + row_h / 2), aspect="auto", cmap=HEAT, vmin=0, vmax=1, zorder=1,
                      interpolation="nearest")
        ax.plot(x, y0 + signal[li, a:b] * MM_PER_MV, color="k", lw=0.55, zorder=3)
        ax.text(x0 + 1.5, y0 + row_h * 0.28, lead, fontsize=7, zorder=4)
        if x0 > LEFT_MM:                      # column separator tick
            ax.plot([x0, x0], [y0 - 3, y0 + 3], color="k", lw=0.8, zorder=3)
        if a == 0:                            # 1 mV, 200 ms calibration pulse
            ax.plot([2, 3, 3, 8, 8, 9], [y0, y0, y0 + 10, y0 + 10, y0, y0], color="k", lw=0.8,
                    zorder=3)
    ax.text(2, height - 5, title or "", fontsize=8, va="center")
    ax.text(width - 2, 1.5 + BOTTOM_MM, note or f"{MM_PER_S:g} mm/s  {MM_PER_MV:g} mm/mV  "
            f"{fs:g} Hz", fontsize=6, ha="right", va="bottom", zorder=4)
    if cam is not None:
        cax = fig.add_axes((1 - 60 / width, 1 - 7.5 / height, 40 / width, 3 / height))
        fig.colorbar(plt.cm.ScalarMappable(cmap=HEAT), cax=cax, orientation="horizontal")
        cax.tick_params(labelsize=5, length=1.5, pad=1)
        cax.set_title("attribution", fontsize=6, pad=1, loc="left")
    os.makedirs(os.path.dirname(os.path.abspath(out_base)), exist_ok=True)
    paths = [f"{out_base}.{fmt}" for fmt in formats]
    for p in paths:
        fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return paths
