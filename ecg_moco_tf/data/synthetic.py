"""Synthetic 12-lead ECG cohort with an LVSD-like phenotype: the project's built-in default data.

The heart is a dipole. Per beat, its vectorcardiogram (Frank X: right->left, Y: head->feet,
Z: front->back, in mV) is a sum of Gaussian waves P, Q, R, S and T, each with its own width
before and after its centre (asymmetric waves: T rises slowly and falls faster, so the ST
segment slopes into it), as in McSharry et al. 2003 (ECGSYN), with per-patient axis, amplitudes
and intervals. The dipole is projected onto the 8 independent leads (I, II, V1-V6) with the
Dower transform (Dower et al., Clin. Cardiol. 1980;3:87-95; precordial rows scaled by fitted
gains and a per-patient chest-wall gain); III, aVR, aVL, aVF follow from Einthoven/Goldberger.

Beats differ: respiratory sinus arrhythmia (its depth varies between ECGs) and RR jitter; the
dipole's components are modulated with respiration and jittered per beat (amplitude and axis
change from beat to beat); each beat's QT follows its RR, its PR jitters. Noise is made per
electrode (RA, LA, LL, V1-V6) and enters the leads through the same differences as real
electrodes, so the leads stay consistent with each other: coloured background noise whose level
comes and goes, bursts of muscle noise, baseline wander (0.05-0.5 Hz, larger on the left leg
and chest electrodes), a little mains, and rare electrode-motion transients (see _NoiseBank).
Wave vectors, spreads, intervals and noise were fitted to real PTB-XL ECGs (see FIT below).

The LVSD-like phenotype is defined on the dipole, with severity ``s`` per positive patient
(``phenotype_scale`` x Beta(1.5, 2.5): mostly mild, see ``SEVERITY_BETA``; the scale sets the
task's difficulty and was calibrated, see docs/data.md), after the ECG changes reported with
reduced ejection fraction (QRS prolongation, low QRS voltage, left axis deviation, poor R-wave
progression, lateral ST depression and T-wave flattening/inversion; e.g. Attia et al., Nat. Med.
2019; Kashou et al., Eur Heart J Digit Health 2021):

- Q/R/S waves widened by 35 % x s, QRS vector shrunk by 25 % x s;
- QRS vector turned 20 x s degrees superiorly (leftward axis) and 0.25 x s mV posteriorly;
- an ST vector of 0.1 x s mV and a T-vector change of 0.45 x s mV pointing away from the
  lateral leads (the direction of I, aVL, V5, V6);
- heart rate up by 8 bpm x s / phenotype_scale.

The ground-truth mask marks (lead, sample) where the phenotype moves the noise-free signal (with
its beat-to-beat variation) by more than ``MASK_THRESHOLD_MV`` (computed against the same ECG
without the phenotype). Normal physiological variation (axis, voltage, QRS width, T amplitude,
heart rate) is of the same order as the phenotype at low severity, so classes overlap.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.fft

from .records import FS, NUM_SAMPLES, write_wfdb

# Dower 1980: rows I, II, V1..V6; columns X, Y, Z.
DOWER = np.array([
    [0.632, -0.235, 0.059], [0.235, 1.066, -0.132],
    [-0.515, 0.157, -0.917], [0.044, 0.164, -1.387], [0.882, 0.098, -1.277],
    [1.213, 0.127, -0.601], [1.125, 0.127, -0.086], [0.831, 0.076, 0.230],
])
# FIT (2026-11-26). Real reference: 300 PTB-XL ECGs, one per patient, drawn with seed 0 from the
# non-MI records of ../shared/data/ptbxl-subset and the NORM records of ../shared/data/ptbxl-pool
# by `python benchmarks/bench_realism.py --no_discriminator` (its measures_real.csv).
# - WAVES vectors, PRECORDIAL_GAIN and the SD of frontal_deg, horizontal_deg, qrs_gain,
#   chest_gain, t_gain and p_gain: `python experiments/fit_synthetic.py` (least squares on the
#   per-lead quartiles of R, S, T, P amplitude and peak-to-peak; two passes, the second with
#   --synthetic_measures to correct the template-vs-delineation bias).
# - By hand from the same benchmark's real medians [IQR], then checked with it: heart rate
#   71.7 bpm [63, 82], PR 154 ms [142, 171], QRS 82 ms [75, 88], QTc 434 ms [419, 449] (hr, pr,
#   qrs_width, qtc, P_CENTRE, T_CENTRE); RR cv 0.034 [0.018, 0.068] (RSA, RR_JITTER); T-wave
#   asymmetry 1.21 [1.05, 1.42] (T widths); beat-to-beat correlation 0.984 [0.971, 0.990]
#   (RESP_GAIN, BEAT_GAIN); TP-segment noise 8-14 uV rms per lead (EMG_*), its coefficient of
#   variation over a record 0.17 [0.12, 0.25] and its spectrum (TP-segment rms 10.3 uV in all,
#   7.6 above 5 Hz, 2.6 above 20 Hz; NOISE_*, BURSTS, MAINS_MV); baseline wander peak-to-peak
#   0.12 (I) to 0.21 (V3) mV per lead (WANDER_*).
# Normal adult waves: vector (mV, Frank XYZ), centre relative to the R peak (s; P and T: from
# the PR and QT intervals, see _template), widths (s) before and after the centre.
WAVES = {  # name: (vector, centre, (width before, width after))
    "P": ((0.076, 0.076, -0.053), None, (0.024, 0.024)),
    "Q": ((-0.104, 0.097, -0.197), -0.024, (0.008, 0.008)),
    "R": ((1.513, 0.489, -0.437), 0.0, (0.011, 0.011)),
    "S": ((-0.152, 0.046, 1.223), 0.028, (0.010, 0.010)),
    "T": ((0.390, 0.116, -0.332), None, (0.052, 0.043)),
}
PRECORDIAL_GAIN = (0.775, 0.761, 0.489, 0.608, 0.762, 0.971)   # V1-V6 rows of DOWER x these
P_CENTRE = 0.0           # P centre = -PR + P_CENTRE (s before the R peak)
T_CENTRE = 0.122         # T centre = QT - T_CENTRE (s after the R peak)
# Between-patient spreads (SD; gains are log-normal) and their means.
SPREAD = {"hr": (72.0, 13.0), "frontal_deg": (0.0, 16.1), "horizontal_deg": (0.0, 13.6),
          "qrs_gain": (0.0, 0.198), "chest_gain": (0.0, 0.229), "t_gain": (0.0, 0.05),
          "p_gain": (0.0, 0.0), "qrs_width": (0.93, 0.12), "pr": (0.155, 0.021),
          "qtc": (0.398, 0.025)}
# Beat to beat: respiratory sinus arrhythmia (RR x (1 + a sin)), with a ~ log-normal around
# RSA; RR jitter; the QRS-T vector modulated with respiration by RESP_GAIN and jittered by
# BEAT_GAIN; QT follows the RR before it with exponent QT_RR; PR jitter PR_JITTER.
RSA, RR_JITTER, RESP_GAIN, BEAT_GAIN, QT_RR, PR_JITTER = 0.045, 0.01, 0.08, 0.03, 0.2, 0.02
# Noise per electrode (mV, see _NoiseBank): background and muscle (an RMS per ECG x electrode
# weights x log-normal gains with EMG_SPREAD), mains, baseline wander, electrode motion.
EMG_MV = (0.0090, 0.45)          # the ECG's muscle-noise RMS: median, log-SD
EMG_SPREAD = 0.25
EMG_ELECTRODE = (1.3, 1.3, 1.0, 0.85, 1.1, 1.2, 1.2, 1.1, 0.85)   # RA, LA, LL, V1-V6
NOISE_SHAPE = (1.0, 25.0)        # background noise power ~ 1/f above 1 Hz, rolled off at 25 Hz
NOISE_ENVELOPE = (0.3, 1.0)      # the background's slow envelope: log-SD, knot spacing (s)
BURSTS = (1.0, 0.3, 1.5, 3.0)    # mean bursts per ECG, min/max duration (s), max RMS x
MAINS_MV = 0.005                 # largest mains amplitude (real records show almost none)
WANDER_MV = (0.08, 0.6)          # the ECG's wander scale: median, log-SD
WANDER_ELECTRODE = (0.6, 0.7, 1.0, 1.05, 1.25, 1.2, 1.15, 1.2, 1.25)   # RA, LA, LL, V1-V6
MOTION = (0.05, 0.1, 0.3)        # share of ECGs with a transient, amplitude range (mV)
LATERAL = np.array([1.0, -0.35, 0.1]) / np.linalg.norm([1.0, -0.35, 0.1])
MASK_THRESHOLD_MV = 0.02   # mV: the calibrated phenotype is subtle
# Severity of a positive patient: phenotype_scale x Beta(1.5, 2.5): mean 0.375, most cases mild,
# a tail to 1 (reduced ejection fraction is a spectrum; most screen-detected cases are mild).
SEVERITY_BETA = (1.5, 2.5)
ELECTRODES = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class CohortConfig:
    """Cohort size and composition (physiology constants live in the module, not here)."""

    num_patients: int = 400
    ecgs_per_patient: float = 1.96      # mean; paper: 37,103 ECGs / 18,919 patients
    prevalence: float = 0.10            # share of LVSD patients (paper: 9.4 % of ECGs)
    fs: int = FS
    num_samples: int = NUM_SAMPLES
    mains_hz: float = 50.0
    phenotype_scale: float = 0.4        # every phenotype effect x this: difficulty (calibrated)
    seed: int = 0


def _rot(axis, angle):
    c, s = np.cos(angle), np.sin(angle)
    n = len(angle)
    r = np.zeros((n, 3, 3))
    i, j = [(0, 1), (0, 2), (1, 2)][axis]  # 0: frontal (about Z), 1: horizontal (about Y)
    k = 3 - i - j
    r[:, k, k] = 1
    r[:, i, i], r[:, j, j], r[:, i, j], r[:, j, i] = c, c, -s, s
    return r


def sample_patients(cfg, rng):
    """Per-patient physiology as a DataFrame (one row per patient)."""
    n = cfg.num_patients
    lvsd = rng.random(n) < cfg.prevalence
    base = np.where(lvsd, rng.beta(SEVERITY_BETA[0], SEVERITY_BETA[1], n), 0.0)

    def normal(name):
        return rng.normal(SPREAD[name][0], SPREAD[name][1], n)

    return pd.DataFrame({
        "patient_id": [f"P{i:06d}" for i in range(n)],
        "lvsd": lvsd.astype(int),
        "severity": cfg.phenotype_scale * base,
        "hr": np.clip(normal("hr") + 8 * base, 45, 115),
        "frontal_deg": normal("frontal_deg"),
        "horizontal_deg": normal("horizontal_deg"),
        "qrs_gain": np.exp(normal("qrs_gain")),
        "chest_gain": np.exp(normal("chest_gain")),
        "qrs_width": np.clip(normal("qrs_width"), 0.7, 1.3),
        "t_gain": np.exp(normal("t_gain")),
        "p_gain": np.exp(normal("p_gain")),
        "pr": np.clip(normal("pr"), 0.11, 0.24),
        "qtc": np.clip(normal("qtc"), 0.36, 0.47),
    })


def _ecg_params(patients, cfg, rng):
    """Expand patients to ECGs (1 + Poisson visits each) with small visit-to-visit changes."""
    n_ecg = 1 + rng.poisson(cfg.ecgs_per_patient - 1, len(patients))
    ecg = patients.loc[patients.index.repeat(n_ecg)].reset_index(drop=True)
    ecg["visit"] = ecg.groupby("patient_id").cumcount() + 1
    m = len(ecg)
    ecg["hr"] = np.clip(ecg["hr"] + rng.normal(0, 5, m), 40, 130)
    ecg["frontal_deg"] += rng.normal(0, 3, m)
    ecg["qrs_gain"] *= np.exp(rng.normal(0, 0.05, m))
    ecg["t_gain"] *= np.exp(rng.normal(0, 0.08, m))
    ecg["emg_mv"] = EMG_MV[0] * np.exp(rng.normal(0, EMG_MV[1], m))
    ecg["mains_mv"] = rng.uniform(0.0, MAINS_MV, m)
    ecg["wander_mv"] = WANDER_MV[0] * np.exp(rng.normal(0, WANDER_MV[1], m))
    ecg["rsa"] = np.minimum(RSA * np.exp(rng.normal(0, 0.9, m)), 0.2)
    return ecg


def _vectors(ecg, severity):
    """Per-ECG wave vectors (n, 3) and widths (n, 2) with the phenotype at the given severity."""
    s = np.asarray(severity, float)[:, None]
    n = len(ecg)
    rot = _rot(0, np.deg2rad(ecg["frontal_deg"].to_numpy())) @ _rot(
        1, np.deg2rad(ecg["horizontal_deg"].to_numpy()))
    lad = _rot(0, -np.deg2rad(20) * s[:, 0])   # leftward (superior) axis shift
    vec, width = {}, {}
    for name, (v, _, w) in WAVES.items():
        v = np.broadcast_to(np.array(v, float), (n, 3)).copy()
        w = np.broadcast_to(np.array(w, float), (n, 2)).copy()
        if name in "QRS":
            v = np.einsum("nij,nj->ni", lad, v) * (1 - 0.25 * s) * ecg["qrs_gain"].to_numpy()[:, None]
            v[:, 2] += 0.25 * s[:, 0] * (name == "R")
            w = w * (ecg["qrs_width"].to_numpy() * (1 + 0.35 * s[:, 0]))[:, None]
        elif name == "T":
            v = v * ecg["t_gain"].to_numpy()[:, None] - 0.45 * s * LATERAL
        elif name == "P":
            v = v * ecg["p_gain"].to_numpy()[:, None]
        vec[name] = np.einsum("nij,nj->ni", rot, v)
        width[name] = w
    vec["ST"] = np.einsum("nij,nj->ni", rot, -0.10 * s * LATERAL)
    width["ST"] = np.full((n, 2), 0.035)
    return vec, width


def _beats(ecg, cfg, rng):
    """R-peak times (n, B) with respiratory sinus arrhythmia and beat-to-beat jitter, and per
    beat: VCG gains (n, B, 3), QT stretch and PR stretch (n, B)."""
    n = len(ecg)
    rr0 = 60.0 / ecg["hr"].to_numpy()
    b = int(np.ceil(cfg.num_samples / cfg.fs / (0.85 * rr0.min()))) + 3
    k = np.arange(b)
    phase = (2 * np.pi * rng.uniform(0.15, 0.35, (n, 1)) * k * rr0[:, None]
             + rng.uniform(0, 2 * np.pi, (n, 1)))
    resp = np.sin(phase)
    rr = rr0[:, None] * (1 + ecg["rsa"].to_numpy()[:, None] * resp
                         + RR_JITTER * rng.standard_normal((n, b)))
    r = np.cumsum(rr, axis=1) - rr[:, :1] - rng.uniform(0.1, 1.0, (n, 1)) * rr0[:, None]
    direction = rng.standard_normal((n, 1, 3))
    gain = (1 + RESP_GAIN * resp[..., None] * direction
            + BEAT_GAIN * rng.standard_normal((n, b, 3))).astype(np.float32)
    qt = (rr / rr.mean(1, keepdims=True)) ** QT_RR
    pr = 1 + PR_JITTER * rng.standard_normal((n, b))
    return r, gain, qt, pr


GRID_HZ, GRID_START, GRID_END = 1000, -0.40, 1.80   # beat template grid, s around the R peak


def _template(ecg, vec, width):
    """Noise-free beat VCG template (n, G, 3) on a 1 kHz grid around the R peak.

    QT follows Bazett from the ECG's mean RR (and, per beat, the RR before it: _beat_index).
    """
    tau = np.arange(GRID_START, GRID_END, 1 / GRID_HZ, dtype=np.float32)[None]
    qrs_w = ecg["qrs_width"].to_numpy()[:, None]
    pr = ecg["pr"].to_numpy()[:, None]
    qt = ecg["qtc"].to_numpy()[:, None] * np.sqrt(60.0 / ecg["hr"].to_numpy()[:, None])
    centre = {name: c * qrs_w for name, (_, c, _) in WAVES.items() if c is not None}
    centre.update({"P": -pr + P_CENTRE, "T": qt - T_CENTRE, "ST": WAVES["S"][1] * qrs_w + 0.06})
    vcg = np.zeros((len(ecg), tau.shape[1], 3), np.float32)
    for name, v in vec.items():
        c = np.broadcast_to(centre[name], (len(ecg), 1)).astype(np.float32)
        w = width[name].astype(np.float32)
        lo, hi = ((np.array([c.min() - 5 * w.max(), c.max() + 5 * w.max()]) - GRID_START)
                  * GRID_HZ).astype(int).clip(0, tau.shape[1])
        x = tau[:, lo:hi] - c
        g = np.exp(-0.5 * (x / np.where(x < 0, w[:, :1], w[:, 1:])) ** 2)
        vcg[:, lo:hi] += g[..., None] * v[:, None, :].astype(np.float32)
    return vcg


def _dower(ecg):
    """Per-ECG Dower matrices (n, 8, 3): precordial rows x PRECORDIAL_GAIN x the ECG's
    chest_gain."""
    d = np.broadcast_to(DOWER, (len(ecg), 8, 3)).copy()
    d[:, 2:] *= (ecg["chest_gain"].to_numpy()[:, None, None]
                 * np.asarray(PRECORDIAL_GAIN)[None, :, None])
    return d.astype(np.float32)


def _eight(vcg, dower):
    """VCG (n, T, 3) -> the 8 independent leads I, II, V1-V6 (n, 8, T)."""
    return np.einsum("ntj,nij->nit", vcg, dower, optimize=True)


def _beat_index(ecg, r, qt, pr, cfg):
    """For each output sample, its beat (n, T) and its index into the template grid (n, T).

    Within a beat, time after the J point is stretched by the beat's QT factor and time before
    the QRS by its PR factor.
    """
    n, t_len = r.shape[0], cfg.num_samples
    bound = r - ecg["pr"].to_numpy()[:, None] - 0.08   # a beat owns [its P onset, next P onset)
    start = np.ceil(bound * cfg.fs).clip(0, t_len).astype(np.int64)
    row = np.arange(n)[:, None] * (t_len + 1)            # rows side by side: one sorted array
    idx = np.searchsorted((start + row).ravel(), (np.arange(t_len)[None] + row).ravel(),
                          side="right").reshape(n, t_len) - 1 - np.arange(n)[:, None] * r.shape[1]
    idx = idx.clip(0)                                      # the last beat starting <= t
    per_beat = _render(np.stack([r, 1 / qt, 1 / pr], -1).astype(np.float32), idx)
    tau = np.arange(t_len, dtype=np.float32) / cfg.fs - per_beat[..., 0]
    tau = np.where(tau > 0.04, 0.04 + (tau - 0.04) * per_beat[..., 1],
                   np.where(tau < -0.04, -0.04 + (tau + 0.04) * per_beat[..., 2], tau))
    g = np.rint((tau - GRID_START) * GRID_HZ).astype(np.int64)
    return idx, np.clip(g, 0, int(round((GRID_END - GRID_START) * GRID_HZ)) - 1)


def _render(template, grid_idx):
    """Place the beat template (n, G, ...) at every beat: (n, T, ...)."""
    n, g = template.shape[:2]
    flat = template.reshape(n * g, -1)
    return np.take(flat, (grid_idx + np.arange(n)[:, None] * g).ravel(), axis=0).reshape(
        grid_idx.shape + template.shape[2:])


def _leads(vcg, beat, gain, dower):
    """Rendered VCG (n, T, 3) x the beats' gains -> leads I, II, V1-V6 (n, 8, T)."""
    return _eight(vcg * _render(gain, beat), dower)


def _limb_and_chest(eight, out):
    """Write the 12 leads (n, 12, T) from I, II, V1-V6 (n, 8, T) by Einthoven and Goldberger."""
    lead_i, lead_ii = eight[:, 0], eight[:, 1]
    out[:, 0], out[:, 1] = lead_i, lead_ii
    np.subtract(lead_ii, lead_i, out=out[:, 2])
    out[:, 3] = -0.5 * (lead_i + lead_ii)
    out[:, 4] = lead_i - 0.5 * lead_ii
    out[:, 5] = lead_ii - 0.5 * lead_i
    out[:, 6:] = eight[:, 2:]
    return out


class _NoiseBank:
    """Noise sources drawn once per cohort, so that each ECG costs only slicing and mixing.

    Background and muscle noise: one slice per ECG (9 electrodes x T samples, at a random
    offset) of a long bank, per electrode scaled by the ECG's level x a log-normal gain. The
    bank is coloured noise (power ~ 1/f above ``NOISE_SHAPE[0]`` Hz, 4th-order roll-off at
    ``NOISE_SHAPE[1]`` Hz: real TP segments hold little power above 20 Hz) times a slow
    log-normal envelope (knots every ``NOISE_ENVELOPE[1]`` s, log-SD ``NOISE_ENVELOPE[0]``),
    plus bursts of white (muscle) noise, Hann-windowed, ``BURSTS[1]``-``BURSTS[2]`` s long,
    1-``BURSTS[3]`` x the background, ``BURSTS[0]`` per ECG slice on average: so noise comes
    and goes, differently in every electrode. Baseline wander (10 frequencies, 0.05 to 0.5 Hz,
    1/sqrt(f) weighted, per-electrode scale ``WANDER_ELECTRODE``) and mains: random mixtures of
    fixed sine/cosine bases. Electrode motion: a step with exponential recovery (0.4 s) on one
    electrode of a ``MOTION[0]`` share of the ECGs.
    """

    def __init__(self, cfg, rng, size=1 << 21):
        self.t = np.arange(cfg.num_samples) / cfg.fs
        white = rng.standard_normal(size, dtype=np.float32)
        f = np.fft.rfftfreq(size, 1 / cfg.fs)
        shape = 1 / np.sqrt(np.maximum(f, NOISE_SHAPE[0]) * (1 + (f / NOISE_SHAPE[1]) ** 4))
        bank = scipy.fft.irfft(scipy.fft.rfft(white) * shape.astype(np.float32), size)
        step = int(NOISE_ENVELOPE[1] * cfg.fs)
        knots = rng.standard_normal(size // step + 2)
        bank *= np.exp(NOISE_ENVELOPE[0] * np.interp(np.arange(size), np.arange(
            len(knots)) * step, knots)).astype(np.float32) / bank.std()
        per_slice = size / (len(ELECTRODES) * cfg.num_samples)
        for _ in range(rng.poisson(BURSTS[0] * per_slice)):
            n = int(rng.uniform(BURSTS[1], BURSTS[2]) * cfg.fs)
            at, src = rng.integers(0, size - n, 2)
            bank[at:at + n] += (np.hanning(n) * white[src:src + n]
                                * rng.uniform(1, BURSTS[3])).astype(np.float32)
        self.bank = bank
        self.freqs = np.linspace(0.05, 0.5, 10)
        w = 2 * np.pi * np.concatenate([self.freqs, [cfg.mains_hz]])[:, None] * self.t[None]
        self.basis = np.concatenate([np.sin(w), np.cos(w)]).astype(np.float32)  # (22, T)
        self.decay = np.exp(-np.arange(cfg.num_samples) / cfg.fs / 0.4).astype(np.float32)

    def eight(self, ecg, rng):
        """Electrode noise (RA, LA, LL, V1-V6) seen in leads I, II, V1-V6 (n, 8, T)."""
        n, e, t, k = len(ecg), len(ELECTRODES), self.t.size, len(self.freqs)
        wander = (ecg["wander_mv"].to_numpy()[:, None, None] / np.sqrt(self.freqs / 0.05) / 4
                  * np.asarray(WANDER_ELECTRODE)[None, :, None])
        mains = ecg["mains_mv"].to_numpy()[:, None, None] * rng.uniform(0, 1, (n, e, 1))
        scale = np.concatenate([wander, mains, wander, mains], axis=-1)
        coef = (rng.standard_normal((n, e, 2 * (k + 1))) * scale).astype(np.float32)
        noise = (coef.reshape(n * e, -1) @ self.basis).reshape(n, e, t)
        emg = (ecg["emg_mv"].to_numpy()[:, None] * np.asarray(EMG_ELECTRODE) * np.exp(
            EMG_SPREAD * rng.standard_normal((n, e)))).astype(np.float32)
        for i, s in enumerate(rng.integers(0, self.bank.size - e * t, n)):   # one slice per ECG
            noise[i] += self.bank[s:s + e * t].reshape(e, t) * emg[i][:, None]
        for i in np.where(rng.random(n) < MOTION[0])[0]:
            at, el = int(rng.integers(0, t)), int(rng.integers(e))
            amp = rng.uniform(MOTION[1], MOTION[2]) * rng.choice([-1, 1])
            noise[i, el, at:] += amp * self.decay[:t - at]
        ra, la, ll = noise[:, 0], noise[:, 1], noise[:, 2]
        noise[:, 3:] -= ((ra + la + ll) / 3)[:, None]     # chest electrodes minus WCT
        noise[:, 1] -= ra                                  # I = LA - RA
        noise[:, 2] -= ra                                  # II = LL - RA
        return noise[:, 1:]


def generate(cfg=CohortConfig(), batch_size=64):
    """Generate a cohort in memory.

    Returns (signals float32 (n, 12, T) mV, masks bool (n, 12, T), ECG table). The same
    ``cfg.seed`` gives the same cohort.
    """
    rng = np.random.default_rng(cfg.seed)
    ecg = _ecg_params(sample_patients(cfg, rng), cfg, rng)
    bank = _NoiseBank(cfg, rng)
    sig = np.empty((len(ecg), 12, cfg.num_samples), np.float32)
    mask = np.zeros((len(ecg), 12, cfg.num_samples), bool)
    for lo in range(0, len(ecg), batch_size):
        part = ecg.iloc[lo:lo + batch_size]
        r, gain, qt, pr = _beats(part, cfg, rng)
        beat, grid_idx = _beat_index(part, r, qt, pr, cfg)
        dower = _dower(part)
        vcg = _template(part, *_vectors(part, part["severity"].to_numpy()))
        eight = _leads(_render(vcg, grid_idx), beat, gain, dower)
        eight += bank.eight(part, rng)
        _limb_and_chest(eight, sig[lo:lo + len(part)])
        pos = np.where(part["severity"].to_numpy() > 0)[0]
        if len(pos):
            sub = part.iloc[pos]
            change = vcg[pos] - _template(sub, *_vectors(sub, np.zeros(len(sub))))
            change = _leads(_render(change, grid_idx[pos]), beat[pos], gain[pos], dower[pos])
            change = _limb_and_chest(change, np.empty((len(pos), 12, cfg.num_samples),
                                                      np.float32))
            mask[lo + pos] = np.abs(change) > MASK_THRESHOLD_MV
    ecg["label"] = ecg["lvsd"]
    return sig, mask, ecg


def write_cohort(out_dir, cfg=CohortConfig(), progress=True):
    """Generate a cohort and write it as WFDB records (format 16, 1 uV); returns its manifest
    (write it into ``out_dir`` with ``write_manifest`` to read the records by it).

    Layout: ``records/<id>.{hea,dat}``, ``masks/<id>.npy`` (np.packbits of the (12, T) boolean
    ground-truth mask, positives only); the manifest's columns: record (relative to
    ``out_dir``), patient_id, label, split (empty), severity, mask, hr, visit.
    """
    from tqdm.auto import tqdm

    sig, mask, ecg = generate(cfg)
    os.makedirs(os.path.join(out_dir, "records"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "masks"), exist_ok=True)
    names = [f"{p}_{v}" for p, v in zip(ecg["patient_id"], ecg["visit"])]
    mask_col = []
    for i, name in enumerate(tqdm(names, desc="writing ECGs", disable=not progress, unit="ecg")):
        write_wfdb(os.path.join(out_dir, "records", name), sig[i], cfg.fs,
                   comments=[f"synthetic ecg-moco-tf seed={cfg.seed}"])
        if ecg["severity"].iloc[i] > 0:
            np.save(os.path.join(out_dir, "masks", name + ".npy"), np.packbits(mask[i], axis=-1))
            mask_col.append(f"masks/{name}.npy")
        else:
            mask_col.append("")
    manifest = pd.DataFrame({
        "record": [f"records/{n}" for n in names], "patient_id": ecg["patient_id"],
        "label": ecg["label"], "split": None, "severity": ecg["severity"].round(4),
        "mask": mask_col, "hr": ecg["hr"].round(1), "visit": ecg["visit"]})
    return manifest


def read_mask(path, num_samples=NUM_SAMPLES):
    """Unpack a saved ground-truth mask to bool (12, num_samples)."""
    return np.unpackbits(np.load(path), axis=-1, count=num_samples).astype(bool)
