import os

import numpy as np
import pytest

from ecg_moco_tf.data import synthetic
from ecg_moco_tf.data.manifest import load_records
from ecg_moco_tf.data.records import LEADS

CFG = synthetic.CohortConfig(num_patients=120, seed=5)


@pytest.fixture(scope="module")
def cohort():
    return synthetic.generate(CFG)


def test_shapes_determinism_and_patients(cohort):
    sig, mask, ecg = cohort
    assert sig.shape == (len(ecg), 12, 5000) and sig.dtype == np.float32
    assert mask.shape == sig.shape and mask.dtype == bool
    sig2, _, ecg2 = synthetic.generate(CFG)
    np.testing.assert_array_equal(sig, sig2)
    assert not np.array_equal(sig[:5], synthetic.generate(
        synthetic.CohortConfig(num_patients=120, seed=6))[0][:5])
    per_patient = ecg.groupby("patient_id").size()
    assert per_patient.max() > 1 and 1.5 < per_patient.mean() < 2.5
    # labels are per patient
    assert (ecg.groupby("patient_id")["label"].nunique() == 1).all()


def test_einthoven_and_goldberger_hold(cohort):
    sig = cohort[0]
    i, ii, iii, avr, avl, avf = (sig[:, k] for k in range(6))
    np.testing.assert_allclose(iii, ii - i, atol=1e-5)
    np.testing.assert_allclose(avr, -(i + ii) / 2, atol=1e-5)
    np.testing.assert_allclose(avl, i - ii / 2, atol=1e-5)
    np.testing.assert_allclose(avf, ii - i / 2, atol=1e-5)


def test_realistic_amplitudes_and_heart_rate(cohort):
    sig, _, ecg = cohort
    ptp = np.median(np.ptp(sig, axis=2), axis=0)
    assert np.all((ptp > 0.3) & (ptp < 4.0)), ptp          # mV, like clinical ECGs
    # R-R interval from lead II autocorrelation matches the generated heart rate
    x = sig[0, 1] - sig[0, 1].mean()
    ac = np.correlate(x, x, "full")[x.size:]
    lag = np.argmax(ac[150:750]) + 150
    assert abs(60 * 500 / lag - ecg["hr"].iloc[0]) < 12


def test_phenotype_mask_localized_and_only_in_positives(cohort):
    sig, mask, ecg = cohort
    pos = ecg["label"].to_numpy() == 1
    assert pos.any() and not mask[~pos].any()
    m = mask[pos]
    assert 0.02 < m.mean() < 0.6                              # subtle and localized
    lateral = [LEADS.index(n) for n in ("I", "aVL", "V5", "V6")]
    late = m[:, lateral].mean()
    assert late > 0.05


def test_phenotype_changes_lateral_t_waves(cohort):
    """Mean lateral T-wave amplitude is lower in positives (ST-T vector turned away)."""
    sig, mask, ecg = cohort
    lateral = [LEADS.index(n) for n in ("I", "V6")]
    pos = ecg["label"].to_numpy() == 1
    # 95th percentile of the signal in lateral leads tracks T amplitude and R voltage
    amp = np.percentile(sig[:, lateral], 95, axis=2).mean(axis=1)
    assert amp[pos].mean() < amp[~pos].mean()


def test_write_cohort_roundtrip(tmp_path):
    cfg = synthetic.CohortConfig(num_patients=10, seed=1)
    df = synthetic.write_cohort(str(tmp_path), cfg, progress=False)
    sig, mask, _ = synthetic.generate(cfg)
    df.attrs["root"] = str(tmp_path)
    res = load_records(df, progress=False)
    np.testing.assert_allclose(res.signals, sig, atol=5e-4 + 1e-6)
    for i, m in enumerate(df["mask"]):
        if m:
            np.testing.assert_array_equal(synthetic.read_mask(os.path.join(tmp_path, m)),
                                          mask[i])


# Real PTB-XL medians (300 non-MI / NORM ECGs, one per patient; benchmarks/bench_realism.py,
# seed 0, 2026-11-26): per-lead median-beat peak-to-peak (mV) and intervals.
REAL_P2P = {"I": 0.838, "II": 0.952, "III": 0.655, "aVR": 0.854, "aVL": 0.554, "aVF": 0.671,
            "V1": 1.03, "V2": 1.79, "V3": 1.72, "V4": 1.94, "V5": 1.62, "V6": 1.18}
REAL_INTERVALS = {"hr": 71.7, "pr": 154, "qrs": 82, "qtc": 434}


@pytest.fixture(scope="module")
def measured():
    from ecg_moco_tf.evaluation.realism import measure_cohort

    sig, _, _ = synthetic.generate(synthetic.CohortConfig(num_patients=70, prevalence=0,
                                                          seed=7))
    table, problems = measure_cohort(sig[:70], [str(i) for i in range(70)])
    assert len(problems) <= 3, problems
    return table


def test_voltages_and_intervals_measure_like_ptbxl(measured):
    for lead, real in REAL_P2P.items():
        assert abs(measured[f"p2p_{lead}"].median() / real - 1) < 0.25, lead
    for name, real in REAL_INTERVALS.items():
        assert abs(measured[name].median() / real - 1) < 0.12, name


def test_beats_noise_and_leads_vary(measured):
    # beats differ (respiration, jitter) but stay alike; noise comes and goes within a record
    assert 0.95 < measured["beat_corr"].median() < 0.995
    assert measured["rr_cv"].median() > 0.015 and measured["noise_cv"].median() > 0.08
    noise = measured[[f"noise_uv_{lead}" for lead in LEADS]].median()
    assert noise.max() / noise.min() > 1.2           # electrodes differ (limb leads noisier)
    assert measured["t_asym"].median() > 1.05        # T rises slower than it falls


def test_masks_are_deterministic(cohort):
    _, mask, _ = cohort
    np.testing.assert_array_equal(mask, synthetic.generate(CFG)[1])
