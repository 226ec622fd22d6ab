"""Fit the synthetic generator's wave vectors and between-patient spreads to real ECG statistics.

Reads the per-record measures of real ECGs written by ``bench_realism.py``
(``<out>/measures_real.csv``) and fits, by least squares (scipy), the P, Q, R, S and T vectors
(Frank XYZ, mV), the spreads of axis and gains and the gains of the Dower precordial rows
(``PRECORDIAL_GAIN``) of ``ecg_moco_tf.data.synthetic`` so that the noise-free synthetic median
beats have the real per-lead quartiles (25/50/75 %) of R, S, T and P amplitude and
peak-to-peak (each residual in units of the real IQR; p2p medians weigh 3x). Amplitudes are
read on the noise-free beat template (no delineation), so the fit is fast; check the result
with bench_realism.py. Prints the fitted values as Python to paste into synthetic.py, and the
worst residuals.

    python benchmarks/bench_realism.py --no_discriminator --out=/tmp/bench_realism
    python experiments/fit_synthetic.py --measures=/tmp/bench_realism/measures_real.csv \
        --synthetic_measures=/tmp/bench_realism/measures_synthetic.csv

With ``--synthetic_measures`` (the same benchmark's synthetic side, made with the current
parameters) each target is moved by the difference between the template's and the delineated
synthetic quartile, so that the delineated measures, not the template's, approach the real ones.
"""
import argparse
import json

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from ecg_moco_tf.data import synthetic as syn
from ecg_moco_tf.data.records import LEADS

STATS = ("r_amp", "s_amp", "t_amp", "p_amp", "p2p")
VECTORS = ("P", "Q", "R", "S", "T")
SPREADS = ("frontal_deg", "horizontal_deg", "qrs_gain", "chest_gain", "t_gain", "p_gain")


def template_stats(n=400, seed=0):
    """Per-lead R, S, T, P amplitudes and peak-to-peak of n noise-free synthetic negatives."""
    rng = np.random.default_rng(seed)
    cfg = syn.CohortConfig(num_patients=n, prevalence=0.0, seed=seed)
    ecg = syn._ecg_params(syn.sample_patients(cfg, rng), cfg, rng).iloc[:n]
    vcg = syn._template(ecg, *syn._vectors(ecg, np.zeros(len(ecg))))
    eight = syn._eight(vcg, syn._dower(ecg))                       # (n, 8, G)
    leads = syn._limb_and_chest(eight, np.empty((len(ecg), 12, eight.shape[-1]), np.float32))
    tau = syn.GRID_START + np.arange(leads.shape[-1]) / syn.GRID_HZ
    w = ecg["qrs_width"].to_numpy()[:, None]
    q_on = (syn.WAVES["Q"][1] - 2.5 * syn.WAVES["Q"][2][0]) * w
    q_off = (syn.WAVES["S"][1] + 2.5 * syn.WAVES["S"][2][1]) * w
    qrs = (tau >= q_on) & (tau <= q_off)                            # (n, G)
    t_win = (tau > q_off + 0.04) & (tau <= 0.55)
    p_win = (tau >= -0.30) & (tau < q_on)
    beat = (tau >= -0.30) & (tau <= 0.55)
    out = {}

    def signed_extreme(win):
        x = np.where(win[:, None], leads, 0.0)
        k = np.abs(x).argmax(-1)
        return np.take_along_axis(x, k[..., None], -1)[..., 0]

    out["r_amp"] = np.where(qrs[:, None], leads, -np.inf).max(-1).clip(0)
    out["s_amp"] = (-np.where(qrs[:, None], leads, np.inf).min(-1)).clip(0)
    out["t_amp"] = signed_extreme(t_win)
    out["p_amp"] = signed_extreme(p_win)
    b = leads[..., beat[0]] if beat.ndim == 2 else leads[..., beat]
    out["p2p"] = b.max(-1) - b.min(-1)
    return out


def _smooth_quartiles(v):
    """Quartiles as means of the sorted values within +-5 % of rank (smooth in the parameters,
    which least squares needs)."""
    v = np.sort(v)
    n = len(v)
    return [v[int((q - 0.05) * n):int((q + 0.05) * n)].mean() for q in (0.25, 0.5, 0.75)]


def _set(x):
    i = 0
    waves = dict(syn.WAVES)
    for name in VECTORS:
        _, c, w = waves[name]
        waves[name] = (tuple(float(v) for v in x[i:i + 3]), c, w)
        i += 3
    syn.WAVES = waves
    spread = dict(syn.SPREAD)
    for name in SPREADS:
        spread[name] = (spread[name][0], float(abs(x[i])))
        i += 1
    syn.SPREAD = spread
    syn.PRECORDIAL_GAIN = tuple(float(v) for v in x[i:i + 6])


def _x0():
    return np.r_[[v for n in VECTORS for v in syn.WAVES[n][0]],
                 [syn.SPREAD[n][1] for n in SPREADS], syn.PRECORDIAL_GAIN]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--measures", default="/tmp/bench_realism/measures_real.csv")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--synthetic_measures", default="",
                    help="measures_synthetic.csv of bench_realism with the current parameters: "
                    "the fit then corrects the template's bias vs the delineated measures")
    ap.add_argument("--max_nfev", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    real = pd.read_csv(args.measures)
    q = {(s, lead): np.nanpercentile(real[f"{s}_{lead}"], [25, 50, 75])
         for s in STATS for lead in LEADS}
    if args.synthetic_measures:        # correct the template's bias vs delineated measures
        measured = pd.read_csv(args.synthetic_measures)
        st = template_stats(args.n)
        for j, lead in enumerate(LEADS):
            for s in STATS:
                bias = (np.asarray(_smooth_quartiles(st[s][:, j]))
                        - np.nanpercentile(measured[f"{s}_{lead}"], [25, 50, 75]))
                q[(s, lead)] = q[(s, lead)] + bias

    def residuals(x):
        _set(x)
        st = template_stats(args.n)
        res = []
        for s in STATS:
            for j, lead in enumerate(LEADS):
                r25, r50, r75 = q[(s, lead)]
                s25, s50, s75 = _smooth_quartiles(st[s][:, j])
                iqr = max(r75 - r25, 0.02)
                w = 3.0 if s == "p2p" else 1.0         # the realism goal is on p2p medians
                res += [w * (s50 - r50) / iqr, 0.5 * (s25 - r25) / iqr, 0.5 * (s75 - r75) / iqr]
        return np.asarray(res)

    x = _x0()
    cost = [0.5 * np.sum(residuals(x) ** 2)]
    for _ in range(args.rounds):      # restarts: a fresh Jacobian each round
        fit = least_squares(residuals, x, diff_step=0.05, max_nfev=args.max_nfev)
        x = fit.x
        cost.append(fit.cost)
    _set(x)
    print("cost by round:", " -> ".join(f"{c:.2f}" for c in cost))
    for name in VECTORS:
        print(f'    "{name}": {tuple(round(v, 3) for v in syn.WAVES[name][0])},')
    print(json.dumps({n: round(syn.SPREAD[n][1], 3) for n in SPREADS}))
    print("PRECORDIAL_GAIN =", tuple(round(v, 3) for v in syn.PRECORDIAL_GAIN))
    labels = [f"{s} {lead} q{p}" for s in STATS for lead in LEADS for p in (50, 25, 75)]
    worst = np.argsort(-np.abs(fit.fun))[:12]
    print("worst residuals (IQR units):", ", ".join(f"{labels[i]} {fit.fun[i]:+.2f}"
                                                   for i in worst))


if __name__ == "__main__":
    main()
