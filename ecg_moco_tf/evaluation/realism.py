"""How much does a (synthetic) ECG cohort measure like real ECGs? Per-record statistics, a
real-vs-other comparison table, a figure, and a real-vs-synthetic discriminator.

Per record (12 x T, mV), after splitting each lead into baseline wander (2nd-order Butterworth
low-pass at :data:`WANDER_HZ`, forward-backward) and the rest:

- delineation: neurokit2 on a cleaned lead (``explain.attribution.fiducials``: lead II, else the
  next of its lead list), fiducials shared by the 12 leads;
- the median beat per lead (beats from R - :data:`PRE_S` to R + :data:`POST_S`); its isoelectric
  level is the median of [QRS onset - 30 ms, QRS onset - 10 ms];
- per lead: ``p2p`` (peak-to-peak of the median beat), ``r_amp`` (highest point of the QRS above
  the isoelectric level), ``s_amp`` (deepest point of the QRS below it: S, or Q/QS where
  deeper), ``t_amp`` and ``p_amp``
  (signed largest deviation in the T and P waves), ``noise_uv`` (RMS in uV of the wander-free
  signal in the TP segments, each segment demeaned; the median over segments; power = RMS^2),
  ``wander_p2p`` (peak-to-peak of the wander in mV) and ``beat_corr`` (mean correlation of the
  beats with the median beat);
- per record: ``hr`` (bpm), ``rr_cv`` (RR standard deviation / mean), ``pr``, ``qrs``, ``qt``
  (QRS onset to T offset), ``qtc`` (Bazett) in ms, ``t_asym`` (T peak - left half-amplitude
  point) / (right half-amplitude point - T peak) in the lead with the largest T wave (> 1: slow
  upstroke, fast downstroke), ``noise_cv`` (coefficient of variation of the TP-segment RMS
  over the record: noise that comes and goes), ``beat_corr`` (mean over leads).

Interval values are medians over beats. A record is left out, with the reason, when no lead
delineates, when fewer than :data:`MIN_BEATS` whole beats are found, when they do not resemble
each other (mean correlation with their median below :data:`MIN_BEAT_CORR`: beats "found" in
noise) or when QRS onset/offset or T offset are missing in every beat; a missing P wave leaves
only ``pr`` and ``p_amp`` empty (counted in the table's ``n`` columns).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ecg_moco_tf.data.records import FS, LEADS
from ecg_moco_tf.explain.attribution import DelineationError, fiducials

WANDER_HZ = 0.7
PRE_S, POST_S = 0.30, 0.55
MIN_BEATS = 4
MIN_BEAT_CORR = 0.5      # beats found in noise do not resemble each other (real PTB-XL: >= 0.63)
MIN_RECORDS = 50
LEAD_MEASURES = ("p2p", "r_amp", "s_amp", "t_amp", "p_amp", "noise_uv", "wander_p2p",
                 "beat_corr")
RECORD_MEASURES = ("hr", "rr_cv", "pr", "qrs", "qt", "qtc", "t_asym", "noise_cv", "beat_corr")
UNITS = {"p2p": "mV", "r_amp": "mV", "s_amp": "mV", "t_amp": "mV", "p_amp": "mV",
         "noise_uv": "uV rms", "wander_p2p": "mV", "beat_corr": "r", "hr": "bpm", "rr_cv": "",
         "pr": "ms", "qrs": "ms", "qt": "ms", "qtc": "ms", "t_asym": "ratio", "noise_cv": ""}


def split_wander(signal, fs=FS):
    """(wander, rest): the baseline below :data:`WANDER_HZ` and the signal without it."""
    from scipy.signal import butter, sosfiltfilt

    x = np.asarray(signal, float)
    wander = sosfiltfilt(butter(2, WANDER_HZ, fs=fs, output="sos"), x, axis=-1)
    return wander, x - wander


def _median_offset(values, r, keep):
    v = values[keep] - r[keep] if len(values) == len(r) else np.array([np.nan])
    return float(np.nanmedian(v)) if np.isfinite(v).any() else np.nan


def measure_record(signal, fs=FS, record=None):
    """Statistics of one (12, T) ECG as a flat dict (``p2p_V2``, ``hr``, ...; see module doc).

    Raises DelineationError naming the record and the reason when it cannot be measured.
    """
    x = np.asarray(signal, float)
    wander, hp = split_wander(x, fs)
    lead, r, fid = fiducials(x, fs, record=record, clean=True)
    pre, post, n = int(PRE_S * fs), int(POST_S * fs), x.shape[-1]
    keep = (r - pre >= 0) & (r + post <= n)
    if keep.sum() < MIN_BEATS:
        raise DelineationError(f"record {record or '?'}: {int(keep.sum())} whole beat(s) in "
                               f"lead {lead}, fewer than {MIN_BEATS}")
    off = {k.replace("ECG_", ""): _median_offset(v, r, keep) for k, v in fid.items()}
    for k in ("R_Onsets", "R_Offsets", "T_Offsets"):
        if not np.isfinite(off[k]):
            raise DelineationError(f"record {record or '?'}: no {k.replace('_', ' ').lower()} "
                                   f"found in any beat of lead {lead}")
    rk = r[keep]
    beats = np.stack([hp[:, a - pre:a + post] for a in rk], 1)          # (12, beats, W)
    med = np.median(beats, axis=1)                                        # (12, W)
    at = {k: int(np.clip(round(pre + v), 0, pre + post - 1)) if np.isfinite(v) else None
          for k, v in off.items()}
    q_on, q_off = at["R_Onsets"], max(at["R_Offsets"], at["R_Onsets"] + 2)
    base = np.median(med[:, max(0, q_on - int(0.03 * fs)):max(1, q_on - int(0.01 * fs))], 1)
    dev = med - base[:, None]
    out = {}
    t_lo = at["T_Onsets"] if at["T_Onsets"] is not None else q_off + int(0.04 * fs)
    t_win = dev[:, t_lo:max(at["T_Offsets"], t_lo + 2)]
    t_amp = np.take_along_axis(t_win, np.abs(t_win).argmax(1)[:, None], 1)[:, 0]
    if at["P_Onsets"] is not None and at["P_Onsets"] < q_on - 2:
        p_win = dev[:, at["P_Onsets"]:q_on]
        p_amp = np.take_along_axis(p_win, np.abs(p_win).argmax(1)[:, None], 1)[:, 0]
    else:
        p_amp = np.full(12, np.nan)
    b0 = beats - beats.mean(-1, keepdims=True)
    m0 = med - med.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        bc = np.nanmean((b0 * m0[:, None]).sum(-1) / np.sqrt(
            (b0 ** 2).sum(-1) * (m0[:, None] ** 2).sum(-1)), 1)
    k = LEADS.index(lead)
    if not bc[k] >= MIN_BEAT_CORR:
        raise DelineationError(f"record {record or '?'}: the beats found in lead {lead} do not "
                               f"resemble each other (mean correlation {bc[k]:.2f} < "
                               f"{MIN_BEAT_CORR}): not an ECG, or too noisy")
    noise, seg_rms = _tp_noise(hp, r, fid, fs)
    for i, name in enumerate(LEADS):
        out[f"p2p_{name}"] = float(np.ptp(med[i]))
        out[f"r_amp_{name}"] = float(max(dev[i, q_on:q_off].max(), 0.0))
        out[f"s_amp_{name}"] = float(max(-dev[i, q_on:q_off].min(), 0.0))
        out[f"t_amp_{name}"] = float(t_amp[i])
        out[f"p_amp_{name}"] = float(p_amp[i])
        out[f"noise_uv_{name}"] = float(noise[i])
        out[f"wander_p2p_{name}"] = float(np.ptp(wander[i]))
        out[f"beat_corr_{name}"] = float(bc[i])
    rr = np.diff(r) / fs
    out["hr"] = float(60 / np.median(rr))
    out["rr_cv"] = float(np.std(rr) / np.mean(rr))
    ms = 1000 / fs
    out["pr"] = (off["R_Onsets"] - off["P_Onsets"]) * ms
    out["qrs"] = (off["R_Offsets"] - off["R_Onsets"]) * ms
    out["qt"] = (off["T_Offsets"] - off["R_Onsets"]) * ms
    out["qtc"] = out["qt"] / np.sqrt(np.median(rr))
    wide = dev[np.abs(t_amp).argmax(), q_off + int(0.02 * fs):at["T_Offsets"] + int(0.08 * fs)]
    out["t_asym"] = _t_asymmetry(wide)
    out["noise_cv"] = float(np.std(seg_rms) / np.mean(seg_rms)) if len(seg_rms) > 2 else np.nan
    out["beat_corr"] = float(np.nanmean(bc))
    out["delineation_lead"] = lead
    return out


def _t_asymmetry(t):
    """(T peak - left half-amplitude point) / (right half-amplitude point - T peak) of one
    lead's T window (isoelectric level 0); NaN when the T wave does not fall to half on both
    sides inside the window, or the window is empty (T offset before the QRS offset)."""
    if not len(t):
        return np.nan
    k = int(np.abs(t).argmax())
    above = np.abs(t) >= 0.5 * abs(t[k])
    left = np.where(~above[:k])[0]
    right = np.where(~above[k:])[0]
    if not len(left) or not len(right):
        return np.nan
    return float((k - left[-1]) / max(right[0], 1))


def _tp_noise(hp, r, fid, fs):
    """Per-lead RMS (uV) in the TP segments (T offset + 50 ms to next P onset - 20 ms, or next
    R - 250 ms without a P onset), each segment demeaned; and the lead-mean RMS per segment."""
    none = np.full(len(r), np.nan)
    t_off, p_on = (v if len(v) == len(r) else none for v in
                   (fid.get("ECG_T_Offsets", none), fid.get("ECG_P_Onsets", none)))
    segs = []
    for k in range(len(r) - 1):
        if not np.isfinite(t_off[k]):
            continue
        lo = int(t_off[k] + 0.05 * fs)
        hi = int(p_on[k + 1] - 0.02 * fs) if np.isfinite(p_on[k + 1]) else int(r[k + 1] - 0.25 * fs)
        if hi - lo >= int(0.04 * fs):
            seg = hp[:, lo:hi]
            segs.append(1000 * np.sqrt(np.mean((seg - seg.mean(1, keepdims=True)) ** 2, 1)))
    if not segs:
        return np.full(hp.shape[0], np.nan), np.array([])
    segs = np.asarray(segs)                                   # (segments, 12)
    return np.median(segs, 0), segs.mean(1)


def measure_cohort(signals, records, fs=FS, progress=False):
    """(per-record table, problems table [record, problem]) for (n, 12, T) signals."""
    from tqdm.auto import tqdm

    rows, problems = [], []
    for x, rec in tqdm(zip(signals, records), total=len(records), disable=not progress,
                       desc="measuring ECGs", unit="ecg"):
        try:
            rows.append({"record": rec, **measure_record(x, fs, rec)})
        except DelineationError as e:
            problems.append({"record": rec, "problem": str(e)})
    return (pd.DataFrame(rows), pd.DataFrame(problems, columns=["record", "problem"]))


def _columns():
    cols = [(m, lead, f"{m}_{lead}") for m in LEAD_MEASURES for lead in LEADS]
    return cols + [(m, "", m) for m in RECORD_MEASURES]


def compare(real, other, names=("real", "synthetic")):
    """Table: one row per measure (and lead): n, median, q25, q75 of each side, the relative
    error of the other side's median (vs real) and whether it lies in the real IQR."""
    rows = []
    for measure, lead, col in _columns():
        row = {"measure": measure, "lead": lead, "unit": UNITS[measure]}
        for side, df in zip(names, (real, other)):
            v = pd.to_numeric(df[col], errors="coerce").dropna() if col in df else pd.Series([])
            q = np.percentile(v, [25, 50, 75]) if len(v) else [np.nan] * 3
            row.update({f"{side}_n": len(v), f"{side}_median": q[1], f"{side}_q25": q[0],
                        f"{side}_q75": q[2]})
        a, b = row[f"{names[0]}_median"], row[f"{names[1]}_median"]
        row["rel_error"] = (b - a) / abs(a) if a else np.nan
        row["in_real_iqr"] = bool(row[f"{names[0]}_q25"] <= b <= row[f"{names[0]}_q75"])
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(table, names=("real", "synthetic")):
    """The comparison as aligned text: median [q25, q75] per side."""
    def cell(r, side):
        return (f"{r[side + '_median']:.3g} [{r[side + '_q25']:.3g}, {r[side + '_q75']:.3g}]"
                f" n={r[side + '_n']}")
    lines = [f"{'measure':<12}{'lead':<5}{'unit':<7}{names[0] + ' median [IQR]':<34}"
             f"{names[1] + ' median [IQR]':<34}{'rel.err':>8}  in IQR"]
    for _, r in table.iterrows():
        lines.append(f"{r['measure']:<12}{r['lead']:<5}{r['unit']:<7}{cell(r, names[0]):<34}"
                     f"{cell(r, names[1]):<34}{r['rel_error']:>+8.1%}  "
                     f"{'yes' if r['in_real_iqr'] else 'no'}")
    return "\n".join(lines)


def goals(table):
    """The realism goals (issue 16) measured on a comparison table: a flat dict."""
    t = table.set_index(["measure", "lead"])
    p2p = t.loc["p2p", "rel_error"]
    out = {"lead_p2p_max_rel_error": round(float(p2p.abs().max()), 4),
           "lead_p2p_worst_lead": str(p2p.abs().idxmax()),
           "lead_p2p_rel_error": {k: round(float(v), 3) for k, v in p2p.items()}}
    for m in ("hr", "pr", "qrs", "qtc"):
        out[f"{m}_rel_error"] = round(float(t.loc[(m, ""), "rel_error"]), 4)
    out["beat_corr_in_real_iqr"] = bool(t.loc[("beat_corr", ""), "in_real_iqr"])
    noise = t.loc["noise_uv", "in_real_iqr"]
    out["noise_leads_in_real_iqr"] = int(noise.sum())
    out["goal_p2p_within_15pct"] = bool(out["lead_p2p_max_rel_error"] <= 0.15)
    out["goal_intervals_within_10pct"] = bool(all(abs(out[f"{m}_rel_error"]) <= 0.10
                                                  for m in ("hr", "pr", "qrs", "qtc")))
    out["goal_beat_corr_and_noise_in_iqr"] = bool(out["beat_corr_in_real_iqr"]
                                                  and out["noise_leads_in_real_iqr"] == 12)
    return out


def plot(real, other, path, names=("real", "synthetic")):
    """Box plots of every measure, the two sides next to each other (one panel per measure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(m, [f"{m}_{lead}" for lead in LEADS], list(LEADS)) for m in LEAD_MEASURES]
    panels += [("intervals", ["pr", "qrs", "qt", "qtc"], ["PR", "QRS", "QT", "QTc"]),
               ("hr", ["hr"], ["HR"]),
               ("variability", ["rr_cv", "noise_cv", "t_asym"], ["RR cv", "noise cv", "T asym"])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 2.3 * len(panels)))
    colours = ("tab:blue", "tab:orange")
    for ax, (title, cols, labels) in zip(axes, panels):
        pos = np.arange(len(cols)) * 3.0
        for j, df in enumerate((real, other)):
            data = [pd.to_numeric(df[c], errors="coerce").dropna().to_numpy() if c in df else []
                    for c in cols]
            data = [d if len(d) else np.array([np.nan]) for d in data]
            bp = ax.boxplot(data, positions=pos + j, widths=0.8, showfliers=False,
                            patch_artist=True)
            for box in bp["boxes"]:
                box.set_facecolor(colours[j])
                box.set_alpha(0.6)
        ax.set_xticks(pos + 0.5, labels)
        unit = UNITS.get(title, "ms" if title == "intervals" else "")
        ax.set_title(f"{title} ({unit})" if unit else title, fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in colours]
    axes[0].legend(handles, names, loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def discriminator_auc(real, synthetic, real_groups, synthetic_groups, seed=0, epochs=8,
                      batch_size=32, learning_rate=1e-3, encoder_kwargs=None, verbose=0):
    """Test AUC of the toolkit's encoder + a linear head trained to tell real (1) from
    synthetic (0) ECGs: patient-wise 60/20/20 split (seeded), early stopping on validation
    loss. 0.5: indistinguishable; 1.0: trivially different."""
    import keras

    from ecg_moco_tf.data.splits import _stratified
    from ecg_moco_tf.evaluation.metrics import evaluate
    from ecg_moco_tf.models import adapt_normalization, build_encoder

    x = np.concatenate([real, synthetic]).astype(np.float32)
    y = np.r_[np.ones(len(real)), np.zeros(len(synthetic))].astype(np.float32)
    groups = np.r_[[f"real:{g}" for g in real_groups], [f"synthetic:{g}" for g in
                                                         synthetic_groups]]
    ids = np.unique(groups)
    id_y = np.array([g.startswith("real:") for g in ids], int)
    rest, test = _stratified(ids, id_y, 0.2, seed)
    train, valid = _stratified(rest, id_y[np.isin(ids, rest)], 0.25, seed)
    part = {name: np.isin(groups, s) for name, s in
            (("train", train), ("valid", valid), ("test", test))}
    keras.utils.set_random_seed(seed)
    enc = build_encoder(**(encoder_kwargs or {}))
    adapt_normalization(enc, x[part["train"]])
    model = keras.Sequential([enc, keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy")
    model.fit(x[part["train"]], y[part["train"]], batch_size=batch_size, epochs=epochs,
              validation_data=(x[part["valid"]], y[part["valid"]]), verbose=verbose,
              callbacks=[keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)])
    p = model.predict(x[part["test"]], batch_size=64, verbose=0).ravel()
    m = evaluate(y[part["test"]].astype(int), p, groups[part["test"]], n_boot=500, seed=seed)
    return {"discriminator_auc": round(float(m["auc"]), 4),
            "discriminator_auc_ci": [round(float(m["auc_ci_low"]), 3),
                                     round(float(m["auc_ci_high"]), 3)],
            "discriminator_n": {k: int(v.sum()) for k, v in part.items()}}


def sample_patients(df, max_records, seed=0):
    """One ECG per patient, at most ``max_records`` of them, chosen with ``seed``."""
    one = df.drop_duplicates("patient_id")
    if len(one) > max_records:
        one = one.sample(max_records, random_state=seed)
    out = one.sort_index()
    out.attrs = dict(df.attrs)
    return out


def compare_manifests(real_df, other_df, max_records=300, seed=0, figure=None,
                      discriminator=True, discriminator_kwargs=None, progress=True,
                      names=("real", "synthetic")):
    """Read both manifests (one ECG per patient, at most ``max_records`` each), measure them,
    compare; unreadable and undelineable records are listed in ``problems``. Fewer than
    :data:`MIN_RECORDS` usable records on a side is a SystemExit naming the side.

    Returns a dict: table, problems (DataFrame with a ``side`` column), measures per side,
    summary (the goals, counts, discriminator results).
    """
    from ecg_moco_tf.data.manifest import load_records

    loaded, measured, problems = {}, {}, []
    for side, df in zip(names, (real_df, other_df)):
        df = sample_patients(df, max_records, seed)
        res = load_records(df, on_error="skip", progress=progress)
        problems.append(res.problems.assign(side=side))
        table, bad = measure_cohort(res.signals, res.manifest["record"].tolist(),
                                    progress=progress)
        problems.append(bad.assign(side=side))
        if len(table) < MIN_RECORDS:
            left = pd.concat([res.problems, bad], ignore_index=True)
            listed = "; ".join(f"{r.record}: {r.problem}" for r in left.head(5).itertuples())
            more = f"; ... and {len(left) - 5} more" if len(left) > 5 else ""
            raise SystemExit(f"only {len(table)} usable {side} record(s) of {len(df)} (at least "
                             f"{MIN_RECORDS} are needed; {len(left)} could not be read or "
                             f"delineated{': ' + listed + more if len(left) else ''}): give "
                             "more records")
        ok = res.manifest["record"].isin(table["record"]).to_numpy()
        loaded[side] = (res.signals[ok], res.manifest["patient_id"].to_numpy()[ok])
        measured[side] = table
    problems = pd.concat(problems, ignore_index=True)
    table = compare(measured[names[0]], measured[names[1]], names)
    summary = goals(table)
    summary.update({f"n_{s}": len(measured[s]) for s in names})
    summary.update({f"n_{s}_left_out": int((problems["side"] == s).sum()) for s in names})
    if figure:
        plot(measured[names[0]], measured[names[1]], figure, names)
        summary["figure"] = figure
    if discriminator:
        summary.update(discriminator_auc(loaded[names[0]][0], loaded[names[1]][0],
                                         loaded[names[0]][1], loaded[names[1]][1], seed=seed,
                                         **(discriminator_kwargs or {})))
    else:
        summary["discriminator_auc"] = None
    return {"table": table, "problems": problems, "measures": measured, "summary": summary}


def report(result, names=("real", "synthetic"), out=print):
    """Print the problems, the table and the summary JSON (last)."""
    problems = result["problems"]
    if len(problems):
        out(f"{len(problems)} record(s) left out:")
        for _, p in problems.iterrows():
            out(f"  [{p['side']}] {p['record']}: {p['problem']}")
    out(format_table(result["table"], names))
    out(json.dumps(result["summary"]))


def save(result, out_dir):
    """Write realism_table.csv, left_out.csv, measures_<side>.csv and realism.json."""
    import os

    os.makedirs(out_dir, exist_ok=True)
    result["table"].to_csv(os.path.join(out_dir, "realism_table.csv"), index=False)
    result["problems"].to_csv(os.path.join(out_dir, "left_out.csv"), index=False)
    for side, df in result["measures"].items():
        df.to_csv(os.path.join(out_dir, f"measures_{side}.csv"), index=False)
    with open(os.path.join(out_dir, "realism.json"), "w") as f:
        json.dump(result["summary"], f, indent=1)
