"""Read one 12-lead ECG from WFDB, NumPy or HDF5 into the project's standard array.

Standard array: float32 millivolts, shape (12, 5000) = leads x samples, leads in the canonical
order I, II, III, aVR, aVL, aVF, V1-V6 (taken from the record's lead names, never from position),
resampled to 500 Hz and brought to 10 s by this policy:

- longer than 10 s: the central 10 s are kept (``crop="center"``; ``"start"`` keeps the first 10 s);
- between ``min_seconds`` (default 5 s) and 10 s: zero-padded at the end (0 mV = baseline);
- shorter than ``min_seconds``: a :class:`RecordError`.

Leads beyond the 12 standard ones (e.g. Frank leads vx, vy, vz) make a record an error unless
``ReadOptions(drop_extra_leads=True)`` (``--drop_extra_leads``), which keeps the 12.

Records of 8 leads (I, II, V1-V6, as GE MUSE and many archives store them) get III, aVR, aVL
and aVF derived from I and II (Einthoven and Goldberger; ``info["actions"]`` says so).

WFDB signals whose header units are uV or V are converted to millivolts.

Amplitude: a record whose median QRS peak-to-peak (the median over the 12 leads of each lead's
median peak-to-peak per second) lies outside ``ReadOptions.amplitude_range_mv`` (0.15-8 mV) is
a :class:`RecordError` naming the value and the likely cause (a gain off by 10, volts or
microvolts stored as millivolts), unless ``ReadOptions(check_amplitude=False)``
(``--accept_amplitude``).

Every problem raises :class:`RecordError` naming the record, what is wrong and what to do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FS = 500
NUM_SAMPLES = 5000
_CANON = {name.lower(): name for name in LEADS}
_ALIASES = {"d1": "i", "d2": "ii", "d3": "iii", "di": "i", "dii": "ii", "diii": "iii",
            "lead i": "i", "lead ii": "ii", "lead iii": "iii"}          # keys of _CANON
DERIVED = ("III", "aVR", "aVL", "aVF")           # from I and II when a record has 8 leads


def derived_note(n, total):
    """The console line for ``n`` of ``total`` records read with derived limb leads."""
    return (f"{n} of {total} records have 8 leads (I, II, V1-V6): III, aVR, aVL and aVF "
            "derived from I and II")


class RecordError(ValueError):
    """A record that cannot be used, with the record's name and the problem."""

    def __init__(self, record, problem, fix=""):
        self.record, self.problem, self.fix = str(record), problem, fix
        super().__init__(f"record '{record}': {self.detail}")

    @property
    def detail(self):
        """The problem and, when there is one, the fix: ``problem -> fix``."""
        return self.problem + (f" -> {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class ReadOptions:
    """How raw records are brought to the standard array (see module docstring)."""

    fs: int = FS
    num_samples: int = NUM_SAMPLES
    min_seconds: float = 5.0
    crop: str = "center"
    drop_extra_leads: bool = False      # keep the 12 standard leads of a record with more
    check_amplitude: bool = True        # refuse implausible amplitudes (see module docstring)
    amplitude_range_mv: tuple = (0.15, 8.0)


def qrs_amplitude(x, fs):
    """Median QRS peak-to-peak (mV) of a (samples, 12) array: per lead the median of the
    peak-to-peak of each whole second (one beat or more), then the median over leads."""
    n = int(fs)
    sec = x.shape[0] // n
    if sec == 0:
        return float(np.median(np.ptp(x, axis=0)))
    w = x[:sec * n].reshape(sec, n, x.shape[1])
    return float(np.median(np.median(np.ptp(w, axis=1), axis=0)))


def _amplitude_cause(value, lo, hi):
    if value < lo:
        return ("stored in volts (1000x too small)" if value < lo / 10 else
                "a wrong header gain (values too small, e.g. by 5-10x)")
    return ("stored in microvolts (1000x too large)" if value > hi * 20 else
            "a wrong header gain (values too large, e.g. by 5-10x) or units "
            "other than mV")


def check_amplitude(x, fs, record, options):
    """Raise :class:`RecordError` for an implausible median QRS amplitude (module docstring)."""
    if not options.check_amplitude:
        return
    lo, hi = options.amplitude_range_mv
    value = qrs_amplitude(x, fs)
    if not lo <= value <= hi:
        raise RecordError(record, f"median QRS peak-to-peak {value:.4g} mV, outside the "
                          f"plausible {lo:g}-{hi:g} mV: likely {_amplitude_cause(value, lo, hi)}",
                          "fix the header gain / units (signals must be in millivolts), or set "
                          "ReadOptions(check_amplitude=False) to use it as it is")


def derive_limb_leads(x, names):
    """Append III, aVR, aVL, aVF computed from I and II to a (samples, 8) array whose lead
    ``names`` are I, II, V1-V6 (any order and spelling): returns (array, names)."""
    canon = [_canon(n) for n in names]
    i, ii = x[:, canon.index("I")], x[:, canon.index("II")]
    extra = np.stack([ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=1)
    return np.concatenate([x, extra], axis=1), list(names) + list(DERIVED)


def _is_eight_lead(names):
    return len(names) == 8 and {_canon(n) for n in names} == set(LEADS) - set(DERIVED)


def lead_consistency(x, tolerance=0.3):
    """Warnings for a standard (12, T) array whose limb leads break Einthoven's III = II - I
    or Goldberger's aVR = -(I + II) / 2 by more than ``tolerance`` of the lead's own RMS:
    swapped or mislabelled limb leads (or electrodes) are the usual cause."""
    x = np.asarray(x, dtype=np.float64)
    i, ii, iii, avr = x[0], x[1], x[2], x[3]
    out = []
    for name, lead, expected, rule in (("III", iii, ii - i, "III = II - I"),
                                       ("aVR", avr, -(i + ii) / 2, "aVR = -(I + II)/2")):
        rms = np.sqrt(np.mean(lead ** 2))
        err = np.sqrt(np.mean((lead - expected) ** 2))
        if rms > 0 and err > tolerance * rms:
            out.append(f"limb leads inconsistent: {rule} off by {err / rms:.0%} of {name}'s RMS "
                       "(swapped or mislabelled limb leads or electrodes?)")
    return out


def _canon(name):
    """The canonical spelling of a lead name ('AVL', 'D2', 'DII'), or None."""
    key = str(name).strip().lower()
    return _CANON.get(_ALIASES.get(key, key))


def canonical_lead(name, record="?"):
    """Map a lead name ('AVL', 'avl', 'V5', 'D2') to its canonical spelling, or raise."""
    if _canon(name) is None:
        raise RecordError(record, f"unknown lead name '{name}'",
                          f"rename it to one of {', '.join(LEADS)}")
    return _canon(name)


def lead_order(names, record="?", drop_extra=False):
    """Indices that put ``names`` into canonical order; raises on unknown/duplicated/missing
    names, and on leads beyond the 12 standard ones unless ``drop_extra`` (then ignored)."""
    canon = [_canon(n) for n in names]
    dup = sorted({c for c in canon if c and canon.count(c) > 1})
    if dup:
        raise RecordError(record, f"duplicated lead name(s) {dup}", "each lead must appear once")
    missing = [lead for lead in LEADS if lead not in canon]
    extra = [str(n) for n, c in zip(names, canon) if c is None]
    if missing:
        raise RecordError(record, f"has {len(names)} leads {list(names)}; missing {missing}"
                          + (f", unknown {extra}" if extra else ""),
                          "a standard 12-lead ECG is required: leads named I, II, III, aVR, "
                          "aVL, aVF, V1-V6 (any case; D1-D3 for I-III)")
    if extra and not drop_extra:
        raise RecordError(record, f"has {len(extra)} lead(s) {extra} beyond the 12 standard "
                          "ones", "set ReadOptions(drop_extra_leads=True) to keep the 12 "
                          "standard leads")
    return [canon.index(lead) for lead in LEADS]


def standardize(signal, fs, leads, record="?", options=ReadOptions(), info=None):
    """Turn a raw (samples x leads) or (leads x samples) array into the standard (12, 5000).

    ``info`` (a dict, optional) receives what was found and done: ``fs``, ``seconds``,
    ``leads`` (as stored) and ``actions`` (e.g. ``["resample 100 -> 500 Hz", "pad 8.0 -> 10 s"]``).
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2:
        raise RecordError(record, f"signal has shape {x.shape}, expected 2-D (samples x leads)")
    if leads is None:
        raise RecordError(record, "lead names are unknown",
                          "store them with the record (WFDB sig_name, npz 'leads', HDF5 attr "
                          "'leads') or give them in the manifest's 'leads' column")
    leads = list(leads)
    if x.shape[0] == len(leads) and x.shape[1] != len(leads):
        x = x.T
    if x.shape[1] != len(leads):
        raise RecordError(record, f"signal has shape {x.shape} but {len(leads)} lead names")
    stored, derived = len(leads), _is_eight_lead(leads)
    if derived:
        x, leads = derive_limb_leads(x, leads)
    order = lead_order(leads, record, options.drop_extra_leads)
    actions = [f"drop extra lead(s) {[n for i, n in enumerate(leads) if i not in order]}"] if (
        len(leads) > len(order)) else []
    if derived:
        actions.append("derive III, aVR, aVL, aVF from I and II (8-lead record)")
    x = x[:, order]
    if not np.all(np.isfinite(x)):
        bad = [LEADS[i] for i in np.where(~np.isfinite(x).all(axis=0))[0]]
        raise RecordError(record, f"NaN/Inf samples in lead(s) {bad}",
                          "fix or drop the record; gaps are not interpolated")
    flat = [LEADS[i] for i in np.where(np.ptp(x, axis=0) < 1e-6)[0]]
    if flat:
        raise RecordError(record, f"flat (constant) lead(s) {flat}",
                          "a disconnected electrode; drop the record or repair the lead")
    if fs is None or not np.isfinite(fs) or fs <= 0:
        raise RecordError(record, f"invalid sampling rate {fs}", "give fs in Hz")
    check_amplitude(x, fs, record, options)
    seconds = x.shape[0] / fs
    if seconds < options.min_seconds:
        raise RecordError(record, f"only {seconds:.2f} s long; the minimum is "
                          f"{options.min_seconds} s", "drop it or lower min_seconds (--min_seconds)")
    target = options.num_samples / options.fs
    if int(round(fs)) != options.fs:
        actions.append(f"resample {float(fs):g} -> {options.fs} Hz")
    if abs(seconds - target) * options.fs >= 1:
        actions.append(f"crop ({options.crop}) {seconds:.2f} -> {target:g} s" if seconds > target
                       else f"zero-pad {seconds:.2f} -> {target:g} s")
    if info is not None:
        info.update(fs=float(fs), seconds=round(float(seconds), 3), leads=stored,
                    derived_limb_leads=derived, actions=actions)
    if int(round(fs)) != options.fs:
        from scipy.signal import resample_poly

        ratio = Fraction(options.fs / float(fs)).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=0)
    n = options.num_samples
    if x.shape[0] > n:
        start = (x.shape[0] - n) // 2 if options.crop == "center" else 0
        x = x[start:start + n]
    elif x.shape[0] < n:
        x = np.pad(x, ((0, n - x.shape[0]), (0, 0)))
    return np.ascontiguousarray(x.T, dtype=np.float32)


def plausibility(x, fs, max_p2p_mv=10.0, min_fs=250.0):
    """Warnings (strings) for a standard array ``x`` read from a record sampled at ``fs``: leads
    above ``max_p2p_mv`` peak-to-peak (a wrong header gain or units is the usual cause) and a
    sampling rate below ``min_fs`` (upsampling cannot restore what was never recorded)."""
    out = []
    p2p = np.ptp(np.asarray(x), axis=1)
    high = [f"{LEADS[i]} {p2p[i]:.1f} mV" for i in np.where(p2p > max_p2p_mv)[0]]
    if high:
        out.append(f"lead(s) {', '.join(high)} peak-to-peak, above {max_p2p_mv:g} mV: "
                   "check the header gain / units")
    if fs < min_fs:
        out.append(f"sampled at {fs:g} Hz, below {min_fs:g} Hz: upsampled to {FS} "
                   "Hz, the QRS detail above the original Nyquist frequency is missing")
    return out


def _read_wfdb(path, record):
    import wfdb

    base = path[:-4] if path.endswith((".hea", ".dat", ".mat")) else path
    if not os.path.exists(base + ".hea"):
        raise RecordError(record, f"WFDB header {base}.hea not found", "check the manifest path")
    try:
        rec = wfdb.rdrecord(base, physical=True)
    except Exception as e:  # wfdb raises many types for corrupt headers/data
        raise RecordError(record, f"cannot read WFDB record ({type(e).__name__}: {e})",
                          "the header or signal file is corrupt or truncated") from e
    if rec.p_signal is None:
        raise RecordError(record, "WFDB record has no physical signal")
    units = [str(u).lower() for u in (rec.units or [])]
    to_mv = {"uv": 1e-3, "µv": 1e-3, "v": 1e3}
    scale = np.array([to_mv.get(u, 1.0) for u in units] or [1.0])
    return rec.p_signal * scale, rec.fs, rec.sig_name


def _read_numpy(path, record, fs, leads):
    try:
        obj = np.load(path, allow_pickle=False)
    except Exception as e:
        raise RecordError(record, f"cannot read NumPy file ({type(e).__name__}: {e})") from e
    if isinstance(obj, np.lib.npyio.NpzFile):
        key = "signal" if "signal" in obj.files else obj.files[0]
        sig = obj[key]
        fs = float(obj["fs"]) if "fs" in obj.files else fs
        leads = [str(v) for v in obj["leads"]] if "leads" in obj.files else leads
        return sig, fs, leads
    return obj, fs, leads


def _read_hdf5(path, record, fs, leads, key="signal"):
    import h5py

    path, _, index = path.partition("#")
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise RecordError(record, f"HDF5 file has no dataset '{key}' "
                                  f"(has {list(f.keys())})", "name the dataset 'signal'")
            ds = f[key]
            sig = ds[int(index)] if index else ds[()]
            attrs = {**f.attrs, **ds.attrs}
    except RecordError:
        raise
    except Exception as e:
        raise RecordError(record, f"cannot read HDF5 file ({type(e).__name__}: {e})") from e
    fs = float(attrs["fs"]) if "fs" in attrs else fs
    if "leads" in attrs:
        leads = [v.decode() if isinstance(v, bytes) else str(v) for v in attrs["leads"]]
    return sig, fs, leads


def read_raw(path, fs=None, leads=None, record=None):
    """Read a record as stored: (signal, fs, lead names). Dispatches on the file extension.

    WFDB: the path without extension (or with .hea). NumPy: .npy (fs/leads given by the caller)
    or .npz with arrays 'signal', 'fs', 'leads'. HDF5: .h5/.hdf5 with dataset 'signal' and attrs
    'fs', 'leads'; ``file.h5#i`` picks row i of a stacked (N, samples, leads) dataset.
    """
    record = record or path
    ext = os.path.splitext(path.partition("#")[0])[1].lower()
    if ext in (".npy", ".npz"):
        if not os.path.exists(path):
            raise RecordError(record, f"file {path} not found", "check the manifest path")
        return _read_numpy(path, record, fs, leads)
    if ext in (".h5", ".hdf5"):
        if not os.path.exists(path.partition("#")[0]):
            raise RecordError(record, f"file {path} not found", "check the manifest path")
        return _read_hdf5(path, record, fs, leads)
    return _read_wfdb(path, record)


def read_record(path, fs=None, leads=None, options=ReadOptions(), record=None, info=None):
    """Read any supported record into the standard float32 (12, 5000) millivolt array
    (``info``: see :func:`standardize`)."""
    sig, rfs, rleads = read_raw(path, fs=fs, leads=leads, record=record)
    return standardize(sig, rfs, rleads, record=record or path, options=options, info=info)


def write_wfdb(base_path, signal, fs=FS, leads=LEADS, comments=()):
    """Write a (leads x samples) mV array as a WFDB format-16 record (1 uV resolution).

    A plain writer of the documented header/format-16 layout: ``wfdb.wrsamp`` is correct but
    spends ~70 ms per record in header checks, too slow for cohorts of 10^4-10^5 ECGs. The files
    read back with ``wfdb.rdrecord`` (tested).
    """
    d = np.clip(np.rint(np.asarray(signal, np.float64) * 1000), -32767, 32767).astype("<i2")
    name = os.path.basename(base_path)
    d.T.tofile(base_path + ".dat")
    checksum = ((d.astype(np.int64).sum(axis=1) + 32768) % 65536) - 32768
    lines = [f"{name} {len(leads)} {fs} {d.shape[1]}"]
    lines += [f"{name}.dat 16 1000/mV 16 0 {d[i, 0]} {checksum[i]} 0 {lead}"
              for i, lead in enumerate(leads)]
    lines += [f"# {c}" for c in comments]
    with open(base_path + ".hea", "w") as f:
        f.write("\n".join(lines) + "\n")
