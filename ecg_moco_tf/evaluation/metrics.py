"""Metrics a clinical ML paper reports, with the uncertainty the paper could not show.

- AUC (scikit-learn) with a 95 % bootstrap CI that resamples *patients* (all ECGs of a drawn
  patient come along), since ECGs of one patient are not independent;
- DeLong's test for the difference of two correlated AUCs on the same test ECGs (fast
  algorithm of Sun & Xu, IEEE SPL 2014), clustered by patient (Obuchowski 1997) given ``groups``;
- sensitivity / specificity / PPV / NPV at the Youden threshold and at a chosen sensitivity,
  both chosen on validation predictions and applied to test (``operating_points``);
- Brier score and a calibration curve.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve


def _check(y, p):
    y, p = np.asarray(y).astype(int).ravel(), np.asarray(p, float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and scores {p.shape} differ in length")
    if len(np.unique(y)) != 2:
        raise ValueError("AUC needs both classes in the test set")
    return y, p


def _patient_resamples(y, groups, n_boot, seed):
    """Index arrays of ``n_boot`` bootstrap resamples of ``groups`` (patients) with replacement,
    each holding both classes (one-class draws are redrawn)."""
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = np.split(np.argsort(inv, kind="stable"), np.cumsum(np.bincount(inv))[:-1])
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        idx = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        if y[idx].min() != y[idx].max():
            done += 1
            yield idx


def bootstrap_auc_ci(y, p, groups=None, n_boot=2000, alpha=0.05, seed=0):
    """Percentile bootstrap CI of the AUC, resampling ``groups`` (patients) with replacement.

    ``groups=None`` resamples single ECGs. Resamples holding one class only are redrawn.
    Returns (low, high).
    """
    y, p = _check(y, p)
    aucs = [roc_auc_score(y[i], p[i]) for i in _patient_resamples(y, groups, n_boot, seed)]
    lo, hi = np.percentile(aucs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def bootstrap_auc_difference(y, p1, p2, groups=None, n_boot=2000, alpha=0.05, seed=0):
    """AUC(p1) - AUC(p2) on the same ECGs with a paired patient-bootstrap CI (both models
    scored on every resample). Returns a dict: difference, ci_low, ci_high."""
    y, p1 = _check(y, p1)
    p2 = np.asarray(p2, float).ravel()
    diffs = [roc_auc_score(y[i], p1[i]) - roc_auc_score(y[i], p2[i])
             for i in _patient_resamples(y, groups, n_boot, seed)]
    lo, hi = np.percentile(diffs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"difference": float(roc_auc_score(y, p1) - roc_auc_score(y, p2)),
            "ci_low": float(lo), "ci_high": float(hi)}


def mean_difference_ci(differences, alpha=0.05):
    """Mean of paired differences (e.g. pretrained - scratch AUC per seed) with a t CI."""
    d = np.asarray(differences, float)
    half = (stats.t.ppf(1 - alpha / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            if len(d) > 1 else float("nan"))
    return {"mean": float(d.mean()), "ci_low": float(d.mean() - half),
            "ci_high": float(d.mean() + half), "n": int(len(d))}


def _midrank(x):
    order = np.argsort(x, kind="mergesort")
    z = x[order]
    n = len(x)
    t = np.zeros(n)
    i = 0
    while i < n:
        j = i
        while j < n and z[j] == z[i]:
            j += 1
        t[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n)
    out[order] = t
    return out


def delong_test(y, p1, p2, groups=None):
    """DeLong's test of AUC(p1) == AUC(p2) on the same ECGs (two-sided).

    ``groups`` (patient ids, one per ECG): the variance is clustered by patient (Obuchowski,
    Biometrics 1997; DeLong with clusters): the structural components (V10 of the positive
    ECGs, V01 of the negative ones), centred at the AUC, are summed per patient, ``a_i`` and
    ``b_i``, and ``var(AUC) = sum_i (sqrt(f10) a_i / m + sqrt(f01) b_i / n)^2`` over patients,
    which keeps the covariance of a patient's positive and negative ECGs; ``f10 = I10 / (I10 -
    1)`` and ``f01 = I01 / (I01 - 1)`` with ``I10`` (``I01``) the patients with a positive
    (negative) ECG. The difference of the two AUCs uses the difference of their components.
    With one ECG per patient this is DeLong's unclustered variance, which ``groups=None`` gives.

    Returns a dict with auc1, auc2, difference, its standard error, z, p_value and n_clusters.
    """
    y, p1 = _check(y, p1)
    _, p2 = _check(y, p2)
    if groups is None:
        inv = np.arange(len(y))
    else:
        groups = np.asarray(groups).ravel()
        if groups.shape != y.shape:
            raise ValueError(f"labels {y.shape} and groups {groups.shape} differ in length")
        inv = np.unique(groups, return_inverse=True)[1].ravel()
    n_clusters = int(inv.max()) + 1
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    cp, cn = inv[pos], inv[neg]                   # the patient of each positive / negative ECG
    i10, i01 = len(np.unique(cp)), len(np.unique(cn))
    with np.errstate(divide="ignore", invalid="ignore"):
        f10 = np.float64(i10) / (i10 - 1) if i10 > 1 else np.nan
        f01 = np.float64(i01) / (i01 - 1) if i01 > 1 else np.nan
    aucs, comps = [], []
    for p in (p1, p2):
        tx, ty, tz = _midrank(p[pos]), _midrank(p[neg]), _midrank(np.concatenate([p[pos],
                                                                                  p[neg]]))
        auc = tz[:m].sum() / (m * n) - (m + 1) / (2 * n)
        v10 = (tz[:m] - tx) / n
        v01 = 1 - (tz[m:] - ty) / m
        a = np.bincount(cp, weights=v10 - auc, minlength=n_clusters)   # per-patient sums
        b = np.bincount(cn, weights=v01 - auc, minlength=n_clusters)
        aucs.append(auc)
        comps.append(np.sqrt(f10) * a / m + np.sqrt(f01) * b / n)
    d = comps[0] - comps[1]
    var = float(np.sum(d * d))
    diff = aucs[0] - aucs[1]
    se = float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else float("nan")
    z = diff / se if se > 0 else 0.0
    return {"auc1": float(aucs[0]), "auc2": float(aucs[1]), "difference": float(diff),
            "se": se, "z": float(z), "p_value": float(2 * stats.norm.sf(abs(z))),
            "n_clusters": n_clusters}


def youden_threshold(y, p):
    """Threshold maximizing sensitivity + specificity - 1."""
    y, p = _check(y, p)
    fpr, tpr, thr = roc_curve(y, p)
    return float(thr[1 + np.argmax((tpr - fpr)[1:])])      # thr[0] is +inf (nothing positive)


def threshold_at_sensitivity(y, p, sensitivity=0.9):
    """Highest threshold whose sensitivity reaches ``sensitivity``."""
    y, p = _check(y, p)
    fpr, tpr, thr = roc_curve(y, p)
    return float(thr[np.argmax(tpr >= sensitivity)])


def threshold_metrics(y, p, threshold, population_prevalence=None):
    """Sensitivity, specificity, PPV, NPV of the decision ``p >= threshold``.

    PPV and NPV are at the prevalence of ``y`` (``prevalence``); with ``population_prevalence``
    also at that prevalence, from sensitivity and specificity (Bayes):
    PPV = se * pi / (se * pi + (1 - sp) * (1 - pi)), NPV = sp (1 - pi) / (sp (1 - pi) + (1 - se) pi).
    """
    y, p = _check(y, p)
    pred = p >= threshold
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())

    def ratio(a, b):
        return a / (a + b) if a + b else float("nan")

    out = {"threshold": float(threshold), "sensitivity": ratio(tp, fn),
           "specificity": ratio(tn, fp), "ppv": ratio(tp, fp), "npv": ratio(tn, fn),
           "prevalence": float(y.mean()), "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    if population_prevalence is not None:
        pi, se, sp = float(population_prevalence), out["sensitivity"], out["specificity"]
        out.update(population_prevalence=pi,
                   ppv_at_population=ratio(se * pi, (1 - sp) * (1 - pi)),
                   npv_at_population=ratio(sp * (1 - pi), (1 - se) * pi))
    return out


def operating_points(y, p, valid=None, sensitivity=0.9, population_prevalence=None,
                     valid_name="valid2"):
    """Youden and ``sensitivity`` thresholds chosen on ``valid`` = (labels, scores) (the
    validation split, named ``valid_name``) and applied to (``y``, ``p``) (test). Without
    ``valid`` they are chosen on ``y``, ``p`` themselves, which is optimistic; ``chosen_on``
    says which."""
    yv, pv = _check(*valid) if valid is not None else (y, p)
    rules = {"youden": youden_threshold(yv, pv),
             f"at_sensitivity_{sensitivity:g}": threshold_at_sensitivity(yv, pv, sensitivity)}
    out = {k: threshold_metrics(y, p, t, population_prevalence) for k, t in rules.items()}
    out["chosen_on"] = valid_name if valid is not None else "the scored data itself (optimistic)"
    return out


def evaluate(y, p, groups=None, sensitivity=0.9, n_boot=2000, seed=0, calibration_bins=10,
             valid=None, population_prevalence=None, valid_name="valid2"):
    """Everything above for one model's test predictions, as a JSON-friendly dict.

    ``valid``: (labels, scores) of the validation split (``valid_name``): the operating points'
    thresholds are chosen there and applied to the test predictions (``chosen_on``)."""
    y, p = _check(y, p)
    lo, hi = bootstrap_auc_ci(y, p, groups, n_boot=n_boot, seed=seed)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=calibration_bins, strategy="quantile")
    return {
        "n_ecgs": int(len(y)), "n_positive": int(y.sum()),
        "n_patients": int(len(np.unique(groups))) if groups is not None else int(len(y)),
        "auc": float(roc_auc_score(y, p)), "auc_ci_low": lo, "auc_ci_high": hi,
        "brier": float(brier_score_loss(y, p)),
        **operating_points(y, p, valid, sensitivity, population_prevalence, valid_name),
        "calibration": {"mean_predicted": mean_pred.tolist(), "fraction_positive":
                        frac_pos.tolist()},
    }
