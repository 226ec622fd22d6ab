"""Explanation figures: map speed per method on the default (full-size) classifier, beat
delineation speed, 12-lead figure time, and how often each method finds what a tiny model
was trained on (a bump in lead V2 at a random time; training seeds 0-3, 32 positive test ECGs
each; a hit = map maximum in V2 within the bump +- 64 samples).

Speed: untrained weights (speed does not depend on training), synthetic ECGs.
Prints one JSON object.
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
METHODS = ("gradcam", "gradcam++", "layercam", "scorecam")


def _speed(out):
    import keras

    from ecg_moco_tf.data import synthetic
    from ecg_moco_tf.explain import attribution, ecgplot
    from ecg_moco_tf.explain.gradcam import gradcam
    from ecg_moco_tf.models import build_encoder
    from ecg_moco_tf.models.classifier import build_classifier

    x, _, _ = synthetic.generate(synthetic.CohortConfig(num_patients=40, seed=1))
    x = x[:64]
    keras.utils.set_random_seed(0)
    clf = build_classifier(build_encoder())
    for method in METHODS:
        n = 8 if method == "scorecam" else 64
        gradcam(clf, x[:4], method=method)                       # warm-up (tracing)
        t0 = time.perf_counter()
        maps = gradcam(clf, x[:n], method=method)
        out[f"{method}_ecg_per_s"] = round(n / (time.perf_counter() - t0), 2)
    t0 = time.perf_counter()
    for s in x[:50]:
        attribution.delineate(s)
    out["delineation_ecg_per_s"] = round(50 / (time.perf_counter() - t0), 1)
    with tempfile.TemporaryDirectory() as d:
        for layout in ("4x3", "12"):
            t0 = time.perf_counter()
            paths = ecgplot.plot_ecg(x[0], os.path.join(d, layout), cam=maps[0], layout=layout)
            out[f"figure_{layout}_png_svg_s"] = round(time.perf_counter() - t0, 2)
            out[f"figure_{layout}_kb"] = [round(os.path.getsize(p) / 1e3) for p in paths]


def _localisation(out, seeds=(0, 1, 2, 3)):
    import keras

    from ecg_moco_tf.explain.gradcam import gradcam
    from ecg_moco_tf.models import build_encoder
    from ecg_moco_tf.models.classifier import build_classifier
    from tests.test_explain import LEAD, WIDTH, bump_data
    from tests.training.test_pretrain import TINY

    hits = {m: [] for m in METHODS}
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        x, y, _ = bump_data()
        clf = build_classifier(build_encoder(**TINY), hidden_units=8)
        for layer in clf.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.8
        clf.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
        clf.fit(x, y, epochs=8, batch_size=16, verbose=0)
        xt, yt, st = bump_data(64, seed=1)
        pos, start = xt[yt == 1], st[yt == 1]
        for m in METHODS:
            maps = gradcam(clf, pos, method=m)
            lead, t = np.unravel_index(maps.reshape(len(maps), -1).argmax(1), maps.shape[1:])
            hit = (lead == LEAD) & (t >= start - 64) & (t < start + WIDTH + 64)
            hits[m].append(round(float(hit.mean()), 3))
    out["bump_hit_rate_by_seed"] = hits


def main():
    out = {}
    _speed(out)
    _localisation(out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
