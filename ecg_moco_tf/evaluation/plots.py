"""Figures: ROC curves of all experiments, calibration, label efficiency."""
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


def plot_calibration(summaries, path):
    """``summaries``: {name: evaluate(...) dict}."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in summaries.items():
        c = s["calibration"]
        ax.plot(c["mean_predicted"], c["fraction_positive"], marker="o", ms=3,
                label=f"{name} (Brier {s['brier']:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    ax.set(xlabel="mean predicted probability", ylabel="fraction positive",
           title="Calibration (test)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_label_efficiency(table, path):
    """``table``: DataFrame with columns fraction, init, auc (one row per seed)."""
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
    seeds = table.groupby(["fraction", "init"]).size().min()
    ax.set(xlabel="% of downstream training labels", ylabel="test AUC", ylim=(0, 1),
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
