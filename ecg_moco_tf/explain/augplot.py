"""One ECG lead under each augmentation, one panel per transform (paper Figure 1).

Every panel shows its transform's drawn parameters in the title. To make the parameters
known, each transform's random range is pinned to one value drawn (seeded) from that range;
what varies per lead (baseline offset and wander, mains amplitude, EMG level, masked leads) is
measured from the change in the drawn lead. The erased span is shaded, and the transforms whose
effect is small next to the QRS (noise, smoothing) get a zoomed inset around the tallest beat.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ecg_moco_tf import augment  # noqa: E402
from ecg_moco_tf.data.records import LEADS  # noqa: E402

ZOOMED = ("GaussianNoise", "GaussianSmoothing", "PowerlineNoise", "MuscleNoise")


def _pinned(kind, rng):
    """Constructor arguments that fix the transform's drawn parameter, and its label."""
    d = kind()
    name = kind.__name__
    if name == "GaussianNoise":
        v = rng.uniform(0.5, 1.0) * d.max_std_mv
        return ({"min_std_mv": v, "max_std_mv": v},
                f"noise std {v:.3f} mV (range 0-{d.max_std_mv:g})")
    if name == "GaussianSmoothing":
        v = rng.uniform(d.min_sigma_s, d.max_sigma_s)
        return ({"min_sigma_s": v, "max_sigma_s": v}, f"Gaussian sigma {v * 1e3:.1f} ms "
                f"(range {d.min_sigma_s * 1e3:g}-{d.max_sigma_s * 1e3:g} ms)")
    if name == "RandomErasing":
        v = rng.uniform(0.5, 1.0) * d.max_seconds
        return {"min_seconds": v, "max_seconds": v, "per_lead_probability": 0.0}, f"{v:.2f} s"
    if name == "TimeResize":
        v = rng.choice([rng.uniform(d.min_scale, 0.92), rng.uniform(1.08, d.max_scale)])
        return ({"min_scale": v, "max_scale": v}, f"stretch s = {v:.2f}, y(t) = x(t/s) "
                f"(range {d.min_scale:g}-{d.max_scale:g})")
    if name == "BaselineShift":
        v = rng.uniform(d.min_hz, d.max_hz)
        return {"min_hz": v, "max_hz": v}, f"{v:.2f} Hz"
    if name == "LeadMasking":
        return {"lead_probability": 0.5}, ""
    if name == "PowerlineNoise":
        return {}, f"{d.mains_hz:g} Hz"
    if name == "RandomResizedCrop":
        v = rng.uniform(d.min_seconds, d.max_seconds)
        return ({"min_seconds": v, "max_seconds": v}, f"{v:.1f} s window resampled to the full "
                f"length (x{(10 - 0.002) / (v - 0.002):.2f} in time)")
    return {}, ""


def _sine_fit(d, hz, fs):
    """Least-squares offset and amplitude of ``d`` = c + a sin(2 pi hz t + phi)."""
    t = np.arange(len(d)) / fs
    basis = np.stack([np.ones_like(t), np.sin(2 * np.pi * hz * t), np.cos(2 * np.pi * hz * t)], 1)
    c, s, k = np.linalg.lstsq(basis, d, rcond=None)[0]
    return c, float(np.hypot(s, k))


def _label(name, pinned, x, y, li, lead, fs):
    """The panel title's parameters, measured where the transform draws them per lead."""
    d = (y - x)[li]
    if name == "RandomErasing":
        gone = np.where(np.all(y == 0, axis=0) & np.any(x != 0, axis=0))[0]
        return f"erased {gone[0] / fs:.2f}-{(gone[-1] + 1) / fs:.2f} s ({pinned}, all leads)"
    if name == "BaselineShift":
        hz = float(pinned.split()[0])
        c, a = _sine_fit(d, hz, fs)
        return f"lead {lead}: offset {c:+.2f} mV, wander {a:.2f} mV at {pinned}"
    if name == "LeadMasking":
        masked = [LEADS[i] for i in range(len(LEADS)) if not np.any(y[i])]
        return f"masked leads: {', '.join(masked) or 'none'} (each with probability 0.5 here)"
    if name == "PowerlineNoise":
        c, a = _sine_fit(d, float(pinned.split()[0]), fs)
        return f"{pinned} sine, lead {lead} amplitude {a:.3f} mV"
    if name == "MuscleNoise":
        return f"EMG-like high-pass noise, lead {lead} std {d.std():.3f} mV"
    return pinned


PER_LEAD = ("BaselineShift", "LeadMasking", "PowerlineNoise", "MuscleNoise")


def _draw(kind, x, seed, fs, rng, window, li):
    """(augmented x, label parameters): the transform with its drawn parameters pinned.
    Random erasing is redrawn (seeded) until its span falls inside the drawn window; the
    transforms that draw a strength per lead (:data:`PER_LEAD`) show the strongest of 16
    seeded draws in the drawn lead (the title gives the measured strength)."""
    kwargs, pinned = _pinned(kind, rng)
    layer = kind(probability=1.0, fs=fs, **kwargs)
    best = None
    for k in range(64 if kind.__name__ == "RandomErasing" else 16):
        y = layer.apply(x[None], np.array([seed, 1 + k]))[0].numpy()
        if kind.__name__ == "RandomErasing":
            gone = np.where(np.all(y == 0, axis=0) & np.any(x != 0, axis=0))[0]
            if len(gone) and gone[-1] < window:
                return y, pinned
        elif kind.__name__ not in PER_LEAD:
            return y, pinned
        strength = float(np.std(y[li] - x[li]))
        if best is None or strength > best[0]:
            best = (strength, y)
    return best[1], pinned


def plot_augmentations(x, out, lead="II", seconds=4.0, seed=0, extras=True, fs=500):
    """Draw ``x`` (12, T) mV and each transform applied with probability 1; returns ``out``.

    Random erasing spans all leads (so it shows in the lead drawn); lead masking masks each
    lead with probability 0.5 (the drawn lead may or may not be among them: the title says).
    """
    kinds = augment.PAPER_TRANSFORMS + (augment.EXTRA_TRANSFORMS if extras else ())
    li = LEADS.index(lead)
    n = min(int(seconds * fs), x.shape[1])
    t = np.arange(n) / fs
    rng = np.random.default_rng(seed)
    beat = int(np.argmax(np.abs(x[li, :n] - np.median(x[li, :n]))))
    zoom = slice(max(0, beat - int(0.2 * fs)), min(n, beat + int(0.2 * fs)))
    fig, axes = plt.subplots(len(kinds) + 1, 1, figsize=(11, 1.6 * (len(kinds) + 1)),
                             sharex=True)
    axes[0].plot(t, x[li, :n], color="k", lw=0.8)
    axes[0].set_title(f"original (lead {lead}); grey: original, red: augmented (each transform "
                      "with probability 1; per-lead strengths: the strongest of 16 seeded "
                      "draws)", fontsize=9, loc="left")
    for ax, kind in zip(axes[1:], kinds):
        name = kind.__name__
        y, pinned = _draw(kind, x, seed, fs, rng, n, li)
        ax.plot(t, x[li, :n], color="0.7", lw=0.8)
        ax.plot(t, y[li, :n], color="C3", lw=0.8)
        ax.set_title(f"{name}: {_label(name, pinned, x, y, li, lead, fs)}", fontsize=9,
                     loc="left")
        if name == "RandomErasing":
            gone = np.where(np.all(y == 0, axis=0) & np.any(x != 0, axis=0))[0]
            ax.axvspan(gone[0] / fs, min(gone[-1] + 1, n) / fs, color="C0", alpha=0.15,
                       label="erased")
            ax.legend(loc="upper right", fontsize=7)
        if name in ZOOMED:
            ins = ax.inset_axes([0.78, 0.08, 0.21, 0.84])
            ins.plot(t[zoom], x[li, zoom], color="0.6", lw=0.9)
            ins.plot(t[zoom], y[li, zoom], color="C3", lw=0.7)
            ins.set_xticks([])
            ins.tick_params(labelsize=6)
            ins.set_title("zoom 0.4 s", fontsize=6, pad=1)
            ax.indicate_inset_zoom(ins, edgecolor="0.4")
    for ax in axes:
        ax.set_ylabel("mV", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
