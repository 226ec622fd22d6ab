"""Figures: ROC curves of all experiments, calibration, label efficiency, pretraining monitor."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def plot_roc(results, path, title="ROC on the test split"):
    """``results``: {name: (y, p, summary-dict with auc/auc_ci_low/auc_ci_high)}."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, p, s) in results.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name}: {s['auc']:.3f} "
                f"[{s['auc_ci_low']:.3f}, {s['auc_ci_high']:.3f}]")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1),
           ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=7, title="AUC [95% CI]", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def calibration_bins(y, p, n_bins=10):
    """Quantile-bin reliability curve with the number of ECGs per bin: (mean predicted,
    fraction positive, count) arrays over the non-empty bins (the bins of
    ``sklearn.calibration.calibration_curve(strategy="quantile")``)."""
    y, p = np.asarray(y, float).ravel(), np.asarray(p, float).ravel()
    edges = np.percentile(p, np.linspace(0, 100, n_bins + 1))
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=n_bins)
    keep = count > 0
    mean_p = np.bincount(ids, p, n_bins)[keep] / count[keep]
    frac = np.bincount(ids, y, n_bins)[keep] / count[keep]
    return mean_p, frac, count[keep]


def plot_calibration(predictions, path, task_name="positive", n_bins=10):
    """Reliability curves (quantile bins, each point labelled with its ECG count) above a
    histogram of the predictions, so that clustered predictions stay readable.

    ``predictions``: {name: (y, p, summary-dict with ``brier``)}.
    """
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1.2]})
    lo, hi = 1.0, 0.0
    for k, (name, (y, p, s)) in enumerate(predictions.items()):
        mean_p, frac, count = calibration_bins(y, p, n_bins)
        line, = ax.plot(mean_p, frac, marker="o", ms=4,
                        label=f"{name} (Brier {s['brier']:.3f})")
        for xm, fm, c in zip(mean_p, frac, count):
            ax.annotate(str(c), (xm, fm), textcoords="offset points", xytext=(3, 4 - 11 * (k % 2)),
                        fontsize=6, color=line.get_color())
        hx.hist(np.asarray(p, float), bins=40, range=(0, 1), histtype="step", lw=1.2,
                color=line.get_color())
        lo, hi = min(lo, float(np.min(p))), max(hi, float(np.max(p)))
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    ax.set(ylabel=f"fraction {task_name}", xlim=(0, 1), ylim=(0, 1),
           title=f"Calibration (test): {task_name}\n{n_bins} quantile bins, "
                 "number = ECGs in the bin")
    ax.legend(fontsize=7, loc="upper left")
    hx.set(xlabel=f"predicted P({task_name})", ylabel="ECGs")
    hx.text(0.99, 0.9, f"predictions span {lo:.2f}-{hi:.2f}", transform=hx.transAxes,
            ha="right", va="top", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_label_efficiency(table, path, task_name="positive"):
    """``table``: DataFrame with columns fraction, init, auc (one row per seed); the x axis is
    marked at the fractions run (log scale), a dotted line at chance (AUC 0.5)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for init, part in table.groupby("init"):
        g = part.groupby("fraction")["auc"]
        mean, n = g.mean(), g.count()
        sem = g.std(ddof=1).fillna(0) / np.sqrt(n)
        half = sem * np.array([_t95(k) for k in n])
        ax.plot(mean.index * 100, mean, marker="o", label=init)
        ax.fill_between(mean.index * 100, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1),
                        alpha=0.2)
    ax.set_xscale("log")
    fractions = sorted(table["fraction"].unique())
    ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g} %" for f in fractions])
    ax.minorticks_off()
    ax.axhline(0.5, ls=":", color="0.5", lw=1)
    seeds = table.groupby(["fraction", "init"]).size().min()
    ax.set(xlabel="share of downstream training labels (train2)", ylim=(0, 1),
           ylabel=f"test AUC ({task_name})",
           title=f"Label efficiency (mean, t-based 95% CI over {seeds} seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _t95(n):
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else 0.0


def plot_monitor(log_csv, path, selected_epoch=None, selected_by=None):
    """Representation monitor of a pretraining (its ``pretrain_log.csv``): probe and kNN AUC
    (valid2) vs epoch, and alignment / uniformity (valid1 views) on a second panel; epochs
    the monitor skipped (NaN) are left out. ``selected_epoch`` (1-based): a marker at the
    saved encoder. Returns ``path``, or None when the log has no monitor values."""
    import pandas as pd

    log = pd.read_csv(log_csv)
    keys = ("monitor_probe_auc", "monitor_knn_auc", "monitor_alignment", "monitor_uniformity")
    if not any(k in log and log[k].notna().any() for k in keys):
        return None
    from ..training.callbacks import log_epochs

    epoch = log_epochs(log)

    def series(ax, key, label, **kw):
        if key in log and log[key].notna().any():
            ok = log[key].notna()
            return ax.plot(epoch[ok], log[key][ok], marker="o", ms=3, label=label, **kw)
        return []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    series(ax1, "monitor_probe_auc", "logistic probe")
    series(ax1, "monitor_knn_auc", "kNN (cosine, k=20)")
    ax1.set(xlabel="pretraining epoch", ylabel="valid2 AUC (frozen features)",
            title="Probe AUC (train2 -> valid2)")
    ax3 = ax2.twinx()
    lines = series(ax2, "monitor_alignment", "alignment (left)", color="C2")
    lines += series(ax3, "monitor_uniformity", "uniformity (right)", color="C3")
    ax2.set(xlabel="pretraining epoch", ylabel="alignment (lower: view-invariant)",
            title="Alignment / uniformity (valid1 views)")
    ax3.set_ylabel("uniformity (lower: spread out)")
    if lines:
        ax2.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="best",
                   framealpha=0.6)
    if selected_epoch:
        for ax in (ax1, ax2):
            ax.axvline(selected_epoch, ls="--", color="0.5", lw=1,
                       label=f"saved encoder ({selected_by or 'selected'})")
    ax1.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
