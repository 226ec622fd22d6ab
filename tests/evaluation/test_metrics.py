import itertools

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from ecg_moco_tf.evaluation import (bootstrap_auc_ci, delong_test, evaluate,
                                    threshold_at_sensitivity, threshold_metrics,
                                    youden_threshold)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p1 = y * 1.0 + rng.normal(0, 1, n)
    p2 = y * 0.6 + rng.normal(0, 1, n) + 0.3 * p1
    return y, p1, p2


def test_auc_matches_sklearn_and_hand_computation():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.35, 0.9])
    pos, neg = p[y == 1], p[y == 0]
    hand = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg])
    s = evaluate(y, p, n_boot=200)
    assert s["auc"] == pytest.approx(hand) == pytest.approx(roc_auc_score(y, p))


def test_ci_contains_auc_and_is_seeded():
    y, p1, _ = _data()
    lo, hi = bootstrap_auc_ci(y, p1, n_boot=500, seed=1)
    assert lo < roc_auc_score(y, p1) < hi and hi - lo < 0.3
    assert (lo, hi) == bootstrap_auc_ci(y, p1, n_boot=500, seed=1)


def test_patient_level_bootstrap_is_wider_than_ecg_level():
    rng = np.random.default_rng(0)
    n_pat, per = 40, 15
    yp = (np.arange(n_pat) % 3 == 0).astype(int)
    sp = yp * 0.8 + rng.normal(0, 1, n_pat)                       # patient-level score
    groups = np.repeat(np.arange(n_pat), per)
    y = np.repeat(yp, per)
    p = np.repeat(sp, per) + rng.normal(0, 0.05, n_pat * per)     # ECGs of a patient alike
    lo_p, hi_p = bootstrap_auc_ci(y, p, groups, n_boot=800, seed=0)
    lo_e, hi_e = bootstrap_auc_ci(y, p, None, n_boot=800, seed=0)
    assert (hi_p - lo_p) > 2 * (hi_e - lo_e)
    assert evaluate(y, 1 / (1 + np.exp(-p)), groups, n_boot=200)["n_patients"] == n_pat


def _delong_brute(y, p1, p2):
    pos, neg = np.where(y == 1)[0], np.where(y == 0)[0]

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0

    v10, v01, aucs = [], [], []
    for p in (p1, p2):
        m = np.array([[psi(p[i], p[j]) for j in neg] for i in pos])
        aucs.append(m.mean())
        v10.append(m.mean(axis=1))
        v01.append(m.mean(axis=0))
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(pos) + (
        s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(neg)
    z = (aucs[0] - aucs[1]) / np.sqrt(var)
    return aucs, np.sqrt(var), 2 * stats.norm.sf(abs(z))


def test_delong_matches_brute_force():
    y, p1, p2 = _data(120, seed=3)
    p2 = np.round(p2, 1)                                            # ties exercise midranks
    r = delong_test(y, p1, p2)
    aucs, se, pval = _delong_brute(y, p1, p2)
    assert r["auc1"] == pytest.approx(aucs[0], abs=1e-6)
    assert r["auc2"] == pytest.approx(aucs[1], abs=1e-6)
    assert r["se"] == pytest.approx(se, abs=1e-6)
    assert r["p_value"] == pytest.approx(pval, abs=1e-6)
    same = delong_test(y, p1, p1)
    assert same["difference"] == 0 and same["p_value"] == 1.0


def _clustered_data(n_pat=60, seed=0):
    """Patients with 1-4 ECGs whose labels may differ within a patient, and correlated
    scores (a patient effect shared by the patient's ECGs)."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 5, n_pat)
    groups = np.repeat(np.arange(n_pat), per)
    risk = np.repeat(rng.random(n_pat), per)
    y = (rng.random(len(groups)) < 0.2 + 0.5 * risk).astype(int)
    effect = np.repeat(rng.normal(0, 1, n_pat), per)
    p1 = y + effect + rng.normal(0, 0.7, len(y))
    p2 = np.round(0.6 * y + effect + rng.normal(0, 0.9, len(y)), 1)      # ties too
    return y, p1, p2, groups


def _delong_clustered_brute(y, p1, p2, groups):
    """Obuchowski's S10, S01, S11 from the psi matrix, with the small-sample factors
    I10/(I10-1), I01/(I01-1) and their geometric mean for S11."""
    pos, neg = np.where(y == 1)[0], np.where(y == 0)[0]
    m, n = len(pos), len(neg)
    ids = np.unique(groups)
    i10, i01 = len(np.unique(groups[pos])), len(np.unique(groups[neg]))
    f10, f01 = i10 / (i10 - 1), i01 / (i01 - 1)
    a, b = [], []
    for p in (p1, p2):
        psi = (p[pos][:, None] > p[neg][None, :]) + 0.5 * (p[pos][:, None] == p[neg][None, :])
        auc, v10, v01 = psi.mean(), psi.mean(axis=1), psi.mean(axis=0)
        a.append([np.sum(v10[groups[pos] == g] - auc) for g in ids])
        b.append([np.sum(v01[groups[neg] == g] - auc) for g in ids])
    a, b = np.subtract(*a), np.subtract(*b)                # components of AUC1 - AUC2
    s10, s01, s11 = f10 * np.sum(a * a) / m, f01 * np.sum(b * b) / n, np.sum(a * b)
    return np.sqrt(s10 / m + s01 / n + 2 * np.sqrt(f10 * f01) * s11 / (m * n))


def test_delong_clustered_matches_brute_force_and_hand_example():
    y, p1, p2, groups = _clustered_data()
    r = delong_test(y, p1, p2, groups=groups)
    assert r["se"] == pytest.approx(_delong_clustered_brute(y, p1, p2, groups), rel=1e-10)
    assert r["n_clusters"] == 60 and r["difference"] == pytest.approx(r["auc1"] - r["auc2"])
    # by hand: patient A has a positive (0.9) and a negative (0.2) ECG, B a positive (0.4), C
    # a negative (0.6); p2 constant (all components 0). AUC1 = 3/4; V10 = 1, 1/2; V01 = 1, 1/2;
    # centred per-patient sums (positive, negative): A (1/4, 1/4), B (-1/4, 0), C (0, -1/4);
    # I10 = I01 = 2 (factor 2): var = 2 sum_i (a_i / 2 + b_i / 2)^2 = 2 * 3/32 = 3/16
    y, p1, p2 = [1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6], [0.5] * 4
    r = delong_test(y, p1, p2, groups=["A", "A", "B", "C"])
    assert (r["auc1"], r["auc2"], r["n_clusters"]) == (0.75, 0.5, 3)
    assert r["se"] == pytest.approx(np.sqrt(3 / 16), abs=1e-12)
    assert r["z"] == pytest.approx(0.25 / np.sqrt(3 / 16), abs=1e-12)
    # unclustered: var = (1/16 + 1/16) / (2 * 1) + the same for the negatives = 1/8
    assert delong_test(y, p1, p2)["se"] == pytest.approx(np.sqrt(1 / 8), abs=1e-12)
    with pytest.raises(ValueError, match="groups"):
        delong_test(y, p1, p2, groups=["A", "B"])


def test_delong_one_ecg_per_patient_equals_unclustered():
    y, p1, p2 = _data(150, seed=5)
    p2 = np.round(p2, 1)
    plain = delong_test(y, p1, p2)
    ids = np.random.default_rng(1).permutation(len(y)).astype(str)       # any id type, order
    clustered = delong_test(y, p1, p2, groups=ids)
    assert plain["n_clusters"] == clustered["n_clusters"] == len(y)
    for key in ("auc1", "auc2", "difference", "se", "z", "p_value"):
        assert clustered[key] == pytest.approx(plain[key], rel=1e-10, abs=1e-12), key


def test_delong_twin_ecgs_leave_clustered_z_unchanged():
    y, p1, p2, groups = _clustered_data(seed=2)
    twice = np.repeat(np.arange(len(y)), 2)                 # each ECG and its identical twin
    r = delong_test(y, p1, p2, groups=groups)
    r2 = delong_test(y[twice], p1[twice], p2[twice], groups=groups[twice])
    assert abs(r["z"]) > 1 and r2["z"] == pytest.approx(r["z"], rel=0.05)
    assert r2["n_clusters"] == r["n_clusters"]
    plain, plain2 = delong_test(y, p1, p2), delong_test(y[twice], p1[twice], p2[twice])
    assert plain2["z"] / plain["z"] == pytest.approx(np.sqrt(2), rel=0.05)   # pseudo-replicas


def test_threshold_metrics_hand_computed():
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05])
    m = threshold_metrics(y, p, 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 3, 1)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(0.75)
    assert m["ppv"] == pytest.approx(2 / 3) and m["npv"] == pytest.approx(0.75)
    t = threshold_at_sensitivity(y, p, 1.0)
    assert threshold_metrics(y, p, t)["sensitivity"] == 1.0 and t == pytest.approx(0.2)
    assert youden_threshold(y, p) in p


def test_bad_inputs():
    with pytest.raises(ValueError, match="both classes"):
        evaluate([1, 1, 1], [0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="differ in length"):
        evaluate([0, 1], [0.2, 0.3, 0.4])


def test_paired_auc_difference_and_seed_differences():
    from ecg_moco_tf.evaluation import bootstrap_auc_difference, mean_difference_ci

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    good = y + rng.normal(0, 0.6, 120)
    bad = y + rng.normal(0, 2.0, 120)
    d = bootstrap_auc_difference(y, good, bad, n_boot=300, seed=1)
    from sklearn.metrics import roc_auc_score

    assert d["difference"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, bad))
    assert 0 < d["ci_low"] < d["difference"] < d["ci_high"]
    same = bootstrap_auc_difference(y, good, good, n_boot=50)
    assert same == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    m = mean_difference_ci([0.02, 0.04, 0.03, 0.05, 0.01])
    # by hand: mean 0.03, sd 0.0158, t(0.975, 4) = 2.776 -> half width 0.0196
    assert m["mean"] == pytest.approx(0.03) and m["n"] == 5
    assert m["ci_low"] == pytest.approx(0.03 - 0.019632, abs=1e-5)
    assert m["ci_high"] == pytest.approx(0.03 + 0.019632, abs=1e-5)


def test_table2_prints_small_p_values_as_below_0_001():
    from ecg_moco_tf.evaluation.report import table2

    s = {"auc": 0.8, "auc_ci_low": 0.7, "auc_ci_high": 0.9, "n_ecgs": 10, "n_patients": 10,
         "n_positive": 5}
    diff = {"difference": 0.1, "ci_low": 0.05, "ci_high": 0.15}
    summary = {"proposed": s, "baseline_unpretrained": {**s, "paired_bootstrap": diff},
               "baseline_full_labels": {**s, "paired_bootstrap": diff}}
    tests = {"proposed_vs_baseline_unpretrained": {"p_value": 2e-9},
             "proposed_vs_baseline_full_labels": {"p_value": 0.0123}}
    text = table2(summary, tests)
    assert "| < 0.001 |" in text and "| 0.012 |" in text and "0.000" not in text
