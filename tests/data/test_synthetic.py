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
