"""Where a map puts its weight: per lead and per wave (P, QRS, ST, T), per ECG and per cohort.

Beat delineation uses neurokit2 (``ecg_peaks`` for R peaks, ``ecg_delineate(method=
"prominence")`` for wave boundaries) on one lead, lead II by default; if that lead gives fewer
than two beats the next of :data:`DELINEATION_LEADS` is tried. Boundaries are shared by all 12
leads (one heart, one set of fiducials). Per beat:

- P = [P onset, P offset], QRS = [QRS onset, QRS offset (J point)],
- ST = (J point, T onset), T = [T onset, T offset], other = everything else (TP, PR segments);
- a boundary neurokit2 leaves undetermined for a beat is filled with the ECG's median distance
  to the R peak (or, if missing in every beat, :data:`DEFAULT_OFFSETS_S`); the number filled is
  reported per ECG (``filled_boundaries``); where beats overlap, QRS > ST > P > T.

Attribution of one ECG: ``share[lead, wave]`` = the map's mass in that lead and wave / the
map's total mass, so the 12 x 5 table of one ECG sums to 1 (maps with no mass are left out of
cohort means and counted). ``enrichment`` = share / (time fraction of the wave / 12): the share
compared with what a uniform map would give; 1 = no focus, 3 = three times the uniform density.
Cohort tables average the per-ECG shares per group (e.g. positives, negatives).
"""
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ecg_moco_tf.data.records import FS, LEADS  # noqa: E402

WAVES = ("P", "QRS", "ST", "T", "other")
DELINEATION_LEADS = ("II", "V5", "I", "aVF", "V6", "V2")
_BOUNDS = {"P": ("ECG_P_Onsets", "ECG_P_Offsets"), "QRS": ("ECG_R_Onsets", "ECG_R_Offsets"),
           "ST": ("ECG_R_Offsets", "ECG_T_Onsets"), "T": ("ECG_T_Onsets", "ECG_T_Offsets")}
DEFAULT_OFFSETS_S = {"ECG_P_Onsets": -0.20, "ECG_P_Offsets": -0.10, "ECG_R_Onsets": -0.05,
                     "ECG_R_Offsets": 0.05, "ECG_T_Onsets": 0.12, "ECG_T_Offsets": 0.36}
_PAINT = ("T", "P", "ST", "QRS")   # painted in this order: later waves win overlaps


MIN_HEART_RATE_BPM = 30


class DelineationError(ValueError):
    """No lead of an ECG could be delineated."""


def _lead_fiducials(x, fs, clean=False):
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if clean:                        # neurokit2's default cleaning (0.5 Hz high-pass, mains)
            x = nk.ecg_clean(x, sampling_rate=fs)
        _, info = nk.ecg_peaks(x, sampling_rate=fs)
        r = np.asarray(info["ECG_R_Peaks"], int)
        least = max(2, int(MIN_HEART_RATE_BPM / 60 * len(x) / fs))
        if len(r) < least:               # fewer beats than 30 bpm: missed R peaks, next lead
            raise DelineationError(f"{len(r)} beat(s) found, fewer than {least} "
                                   f"({MIN_HEART_RATE_BPM} bpm)")
        _, waves = nk.ecg_delineate(x, r, sampling_rate=fs, method="prominence")
    return r, {k: np.asarray(v, float) for k, v in waves.items()}


def fiducials(signal, fs=FS, leads=DELINEATION_LEADS, record=None, clean=False):
    """R peaks and neurokit2's wave fiducials of one (12, T) ECG, from the first lead of
    ``leads`` that delineates.

    Returns (lead, R peaks int (beats,), {``ECG_P_Onsets``, ..., ``ECG_T_Offsets``: float
    sample indices, NaN where neurokit2 left a boundary undetermined}). ``clean`` runs
    ``nk.ecg_clean`` on the lead first. Raises DelineationError naming the record if no lead
    works.
    """
    problems = []
    for lead in leads:
        try:
            r, fid = _lead_fiducials(np.asarray(signal[LEADS.index(lead)], float), fs, clean)
            return lead, r, fid
        except Exception as e:  # neurokit2 raises assorted errors on flat or noisy leads
            problems.append(f"{lead}: {e}")
    raise DelineationError(f"record {record or '?'}: no beats could be delineated in leads "
                           f"{', '.join(leads)} ({'; '.join(problems)}); check the signal "
                           "(flat, very noisy or not an ECG?)")


def delineate(signal, fs=FS, leads=DELINEATION_LEADS, record=None):
    """Wave of every sample of one (12, T) ECG.

    Returns (codes int8 (T,) indexing :data:`WAVES`, info dict: lead, beats,
    filled_boundaries). Raises DelineationError naming the record if no lead works.
    """
    lead, r, fid = fiducials(signal, fs, leads, record)
    fid = {k: fid.get(k, np.array([])) for k in DEFAULT_OFFSETS_S}
    n = signal.shape[-1]
    filled = 0
    for key, values in fid.items():
        missing = np.isnan(values) if len(values) == len(r) else np.ones(len(r), bool)
        offset = values[~missing] - r[~missing] if len(values) == len(r) else np.array([])
        fill = np.median(offset) if offset.size else DEFAULT_OFFSETS_S[key] * fs
        fid[key] = np.where(missing, r + fill, values) if len(values) == len(r) else r + fill
        filled += int(missing.sum())
    codes = np.full(n, WAVES.index("other"), np.int8)
    for wave in _PAINT:
        start, stop = _BOUNDS[wave]
        lo = np.clip(np.rint(fid[start]).astype(int) + (wave == "ST"), 0, n)
        hi = np.clip(np.rint(fid[stop]).astype(int) + (wave != "ST"), 0, n)
        for a, b in zip(lo, hi):
            codes[a:b] = WAVES.index(wave)
    return codes, {"lead": lead, "beats": len(r), "filled_boundaries": filled}


def wave_shares(cam, codes):
    """(12, 5) share of a (12, T) map's mass per lead and wave; sums to 1 (NaN if no mass)."""
    cam = np.asarray(cam, float)
    total = cam.sum()
    sums = np.stack([cam[:, codes == w].sum(1) for w in range(len(WAVES))], 1)
    return sums / total if total > 0 else np.full(sums.shape, np.nan)


def time_fractions(codes):
    """(5,) fraction of the ECG's samples in each wave."""
    return np.bincount(codes, minlength=len(WAVES)) / len(codes)


def per_ecg_table(records, groups, shares, fractions):
    """Long table: record, group, lead, wave, share, time_fraction (12 x 5 rows per ECG)."""
    n = len(records)
    return pd.DataFrame({
        "record": np.repeat(records, 12 * len(WAVES)),
        "group": np.repeat(groups, 12 * len(WAVES)),
        "lead": np.tile(np.repeat(LEADS, len(WAVES)), n),
        "wave": np.tile(WAVES, 12 * n),
        "share": np.asarray(shares).reshape(-1),
        "time_fraction": np.repeat(np.asarray(fractions), 12, axis=0).reshape(-1)})


def cohort_table(per_ecg):
    """Mean share, time fraction and enrichment per group, lead and wave.

    ECGs whose map has no mass are left out of the means and counted in ``n_no_evidence``.
    """
    rows = []
    for group, g in per_ecg.groupby("group", sort=True):
        used = g.dropna(subset=["share"])
        n_all, n_used = g["record"].nunique(), used["record"].nunique()
        mean = used.groupby(["lead", "wave"], sort=False)[["share", "time_fraction"]].mean()
        for (lead, wave), r in mean.iterrows():
            rows.append({"group": group, "lead": lead, "wave": wave, "share": r["share"],
                         "time_fraction": r["time_fraction"],
                         "enrichment": r["share"] / (r["time_fraction"] / 12)
                         if r["time_fraction"] > 0 else np.nan,
                         "n_ecgs": n_used, "n_no_evidence": n_all - n_used})
    return pd.DataFrame(rows)


def pivot(table, group, value="share"):
    """Leads x waves table of one group (leads in standard order)."""
    t = table[table["group"] == group].pivot(index="lead", columns="wave", values=value)
    return t.reindex(index=list(LEADS), columns=list(WAVES))


def plot_attribution(table, out_base, formats=("png",), title=None):
    """Heat maps (leads x waves) of share and enrichment, one row per group. Returns paths."""
    groups = sorted(table["group"].unique())
    fig, axes = plt.subplots(len(groups), 2, figsize=(9, 4.2 * len(groups)), squeeze=False)
    scale = {"share": 100.0, "enrichment": 1.0}     # shares drawn in %
    vmax = {v: np.nanmax(table[v]) * scale[v] for v in scale}
    for row, group in zip(axes, groups):
        n = int(table.loc[table["group"] == group, "n_ecgs"].iloc[0])
        for ax, value in zip(row, ("share", "enrichment")):
            t = pivot(table, group, value).to_numpy(float) * scale[value]
            im = ax.imshow(t, cmap="magma_r", aspect="auto", vmin=0, vmax=vmax[value])
            ax.set_xticks(range(len(WAVES)), WAVES)
            ax.set_yticks(range(12), LEADS)
            for (i, j), v in np.ndenumerate(t):
                ax.text(j, i, "" if np.isnan(v) else f"{v:.1f}", ha="center", va="center",
                        fontsize=7,
                        color="w" if v > 0.6 * vmax[value] else "k")
            ax.set_title(f"{group} (n={n}): "
                         + ("share of map mass, %" if value == "share" else
                            "enrichment (share / uniform share)"), fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    paths = [f"{out_base}.{fmt}" for fmt in formats]
    os.makedirs(os.path.dirname(os.path.abspath(out_base)), exist_ok=True)
    for p in paths:
        fig.savefig(p, dpi=110)
    plt.close(fig)
    return paths
