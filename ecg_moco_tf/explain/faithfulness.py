"""Is a map right? Scores against a ground-truth mask and against the model itself.

- energy in mask: share of a map's mass inside the (12, T) ground-truth mask (the synthetic
  cohort's phenotype mask); a map that knows nothing scores about the mask's area fraction;
- pointing game: does the map's maximum fall inside the mask (widened by ``tolerance``
  samples along time, default 32 = half a step of the default Grad-CAM layer)?
- deletion curve: erase (set to 0 mV) the most-attributed samples first, in growing fractions,
  and follow the explained score; a faithful map makes it fall fast (low area under the curve).

Baselines: random maps with the same structure as Grad-CAM maps (uniform noise on the target
layer's 12 x ``steps`` grid, upsampled the same way), seeded.
"""
import numpy as np
from scipy.ndimage import binary_dilation

from .gradcam import _scale, upsample

FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def energy_in_mask(maps, masks):
    """(N,) share of each map's mass inside its mask (NaN for a map with no mass)."""
    maps = np.asarray(maps, float)
    total = maps.sum(axis=(1, 2))
    inside = (maps * masks).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.full(len(maps), np.nan), where=total > 0)


def pointing_game(maps, masks, tolerance=32):
    """(N,) 1.0 if a map's maximum lies in its mask widened by ``tolerance`` samples in time
    (same lead), 0.0 if not, NaN for a map with no mass."""
    maps = np.asarray(maps)
    hits = np.full(len(maps), np.nan)
    structure = np.ones((1, 2 * tolerance + 1), bool)
    for i, (m, k) in enumerate(zip(maps, masks)):
        if m.max() > 0:
            lead, t = np.unravel_index(np.argmax(m), m.shape)
            hits[i] = float(binary_dilation(k, structure)[lead, t] if tolerance else k[lead, t])
    return hits


def random_maps(n, num_samples, steps, seed=0):
    """(n, 12, num_samples) random maps: uniform noise on a 12 x ``steps`` grid, upsampled."""
    rng = np.random.default_rng(seed)
    return _scale(upsample(rng.random((n, 12, steps)), num_samples).astype(np.float32))


def deletion_curve(score_fn, signals, maps, fractions=FRACTIONS, seed=0):
    """(len(fractions), N) explained score after erasing the top ``f`` of each map's samples.

    ``score_fn(x)`` returns one score per ECG. Ties in a map (flat regions) are broken at
    random (seeded), so a flat map erases random samples.
    """
    rng = np.random.default_rng(seed)
    signals = np.asarray(signals, np.float32)
    n, size = len(signals), signals[0].size
    ranks = np.argsort(-(np.asarray(maps, float).reshape(n, size)
                         + 1e-9 * rng.random((n, size))), axis=1)
    out = []
    for f in fractions:
        x = signals.reshape(n, size).copy()
        k = int(round(f * size))
        np.put_along_axis(x, ranks[:, :k], 0.0, axis=1)
        out.append(score_fn(x.reshape(signals.shape)))
    return np.asarray(out)


def curve_area(fractions, curve):
    """Normalised area under a mean deletion curve (trapezoid over the fraction range)."""
    f, c = np.asarray(fractions, float), np.asarray(curve, float)
    return float(np.sum(np.diff(f) * (c[1:] + c[:-1]) / 2) / (f[-1] - f[0]))


def faithfulness(maps, masks, score_fn, signals, steps, n_random=20, fractions=FRACTIONS,
                 seed=0, tolerance=32):
    """Energy in mask, pointing game and deletion of ``maps`` vs random maps.

    Returns (summary dict, curves dict {'map': (F,), 'random': (F,)} of mean scores).
    """
    masks = np.asarray(masks, bool)
    shape = masks.shape
    rand = [random_maps(len(maps), shape[-1], steps, seed=seed + r) for r in range(n_random)]
    energy, point = energy_in_mask(maps, masks), pointing_game(maps, masks, tolerance)
    r_energy = np.mean([energy_in_mask(r, masks) for r in rand], axis=0)
    r_point = np.mean([pointing_game(r, masks, tolerance) for r in rand], axis=0)
    curves = {"map": deletion_curve(score_fn, signals, maps, fractions, seed).mean(1),
              "random": np.mean([deletion_curve(score_fn, signals, r, fractions, seed).mean(1)
                                 for r in rand[:5]], axis=0)}
    summary = {
        "n_ecgs": len(maps), "n_no_evidence": int(np.isnan(energy).sum()),
        "mask_area_fraction": float(masks.mean()),
        "energy_in_mask": float(np.nanmean(energy)),
        "energy_in_mask_random": float(np.mean(r_energy)),
        "pointing_game": float(np.nanmean(point)),
        "pointing_game_random": float(np.mean(r_point)),
        "deletion_area": curve_area(fractions, curves["map"]),
        "deletion_area_random": curve_area(fractions, curves["random"]),
        "pointing_tolerance_samples": tolerance, "n_random": n_random}
    return summary, curves
