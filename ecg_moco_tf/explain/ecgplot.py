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

Readability on real records: each lead is drawn around its median (baseline offsets do not
move it out of its row); when complexes are too tall for a row (:func:`gain_mm_per_mv`), the
whole ECG is drawn at half gain (5 mm/mV, said in the footer, calibration pulse 5 mm), and
whatever still exceeds the row is clipped at its edge and marked (red ticks). Lead names sit
in the row's top-left corner on a white box, above the trace. Spans where every lead is
exactly 0 mV for at least 0.1 s (the zero padding of records shorter than 10 s) are shaded
grey and labelled "no signal".
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


def gain_mm_per_mv(signal, layout="4x3"):
    """10 mm/mV, or 5 when at 10 mm/mV a lead's complexes would pass its row's edge by more
    than 3 mm (0.3 mV), judged on each lead's 99.5th percentile of |x - median| (repeated
    complexes count, a few spikes do not)."""
    x = np.asarray(signal, float)
    reach = np.percentile(np.abs(x - np.median(x, axis=1, keepdims=True)), 99.5, axis=1).max()
    return MM_PER_MV if reach * MM_PER_MV <= ROW_MM[layout] / 2 + 3 else MM_PER_MV / 2


def no_signal_spans(signal, fs=FS, min_seconds=0.1):
    """(start, stop) sample ranges where every lead is exactly 0 for >= ``min_seconds``."""
    flat = np.all(np.asarray(signal) == 0, axis=0).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flat, [0]]))
    return [(a, b) for a, b in zip(np.where(edges == 1)[0], np.where(edges == -1)[0])
            if b - a >= min_seconds * fs]


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
    gain = gain_mm_per_mv(signal, layout)
    centred = signal - np.median(signal, axis=1, keepdims=True)
    half = row_h / 2 - 0.5                    # the trace stays inside its row
    empty = no_signal_spans(signal, fs)
    for lead, a, b, x0, y0 in _panels(layout, rhythm_lead, n, fs):
        li = LEADS.index(lead)
        x = x0 + np.arange(b - a) / fs * MM_PER_S
        if cam is not None:
            ax.imshow(np.asarray(cam)[li, a:b][None], extent=(x[0], x[-1], y0 - row_h / 2,
                      y0 + row_h / 2), aspect="auto", cmap=HEAT, vmin=0, vmax=1, zorder=1,
                      interpolation="nearest")
        y = centred[li, a:b] * gain
        ax.plot(x, y0 + np.clip(y, -half, half), color="k", lw=0.55, zorder=3)
        over = np.abs(y) > half
        if over.any():                        # clipped: a red tick at the row's edge
            ax.plot(x[over], y0 + np.sign(y[over]) * half, ls="none", marker="|", ms=2,
                    color="C3", zorder=4)
        for s0, s1 in empty:
            lo, hi = max(s0, a), min(s1, b)
            if hi - lo > 0:
                x_lo, x_hi = x0 + (lo - a) / fs * MM_PER_S, x0 + (hi - a) / fs * MM_PER_S
                ax.add_patch(plt.Rectangle((x_lo, y0 - row_h / 2), x_hi - x_lo, row_h,
                                           color="0.55", alpha=0.35, lw=0, zorder=2))
                if x_hi - x_lo > 12:
                    ax.text((x_lo + x_hi) / 2, y0 - row_h / 4, "no signal", fontsize=6,
                            ha="center", va="center", color="0.25", zorder=4)
        ax.text(x0 + 1, y0 + row_h / 2 - 1, lead, fontsize=7, va="top", zorder=5,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6})
        if x0 > LEFT_MM:                      # column separator tick
            ax.plot([x0, x0], [y0 - 3, y0 + 3], color="k", lw=0.8, zorder=3)
        if a == 0:                            # 1 mV, 200 ms calibration pulse at the gain
            ax.plot([2, 3, 3, 8, 8, 9], [y0, y0, y0 + gain, y0 + gain, y0, y0], color="k",
                    lw=0.8, zorder=3)
    ax.text(2, height - 5, title or "", fontsize=8, va="center")
    half_gain = "" if gain == MM_PER_MV else " (half gain: tall complexes)"
    ax.text(width - 2, 1.5 + BOTTOM_MM, note or f"{MM_PER_S:g} mm/s  {gain:g} mm/mV{half_gain}"
            f"  {fs:g} Hz", fontsize=6, ha="right", va="bottom", zorder=4)
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
