"""One ECG lead under each augmentation, one panel per transform (paper Figure 1)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ecg_moco_tf import augment  # noqa: E402
from ecg_moco_tf.data.records import LEADS  # noqa: E402


# Settings that make every effect visible in the drawn lead (defaults otherwise).
_VISIBLE = {"RandomErasing": {"min_seconds": 0.25, "per_lead_probability": 0.0},
            "LeadMasking": {"lead_probability": 1.0}}


def plot_augmentations(x, out, lead="II", seconds=4.0, seed=0, extras=True, fs=500):
    """Draw ``x`` (12, T) mV and each transform applied with probability 1; returns ``out``.

    Random erasing is forced to span all leads and lead masking to mask every lead, so their
    effect shows in the one lead drawn.
    """
    kinds = augment.PAPER_TRANSFORMS + (augment.EXTRA_TRANSFORMS if extras else ())
    li = LEADS.index(lead)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    fig, axes = plt.subplots(len(kinds) + 1, 1, figsize=(10, 1.5 * (len(kinds) + 1)),
                             sharex=True)
    axes[0].plot(t, x[li, :n], color="k", lw=0.8)
    axes[0].set_title(f"original (lead {lead})", fontsize=9, loc="left")
    for ax, kind in zip(axes[1:], kinds):
        y = kind(probability=1.0, fs=fs, **_VISIBLE.get(kind.__name__, {})).apply(x[None], np.array([seed, 1]))[0].numpy()
        ax.plot(t, x[li, :n], color="0.75", lw=0.8)
        ax.plot(t, y[li, :n], color="C3", lw=0.8)
        ax.set_title(kind.__name__, fontsize=9, loc="left")
    for ax in axes:
        ax.set_ylabel("mV", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
