"""Export figures for the default (full-size) classifier: model size per format, single-ECG
latency (median of 50 calls; TFLite with 1 and with 2 threads, SavedModel), batch throughput on
2 cores, parity per format.

The classifier has the paper's architecture with its normalization adapted on a synthetic
cohort; its weights are not trained (latency, size and parity do not depend on training).
Prints one JSON object.
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import json
import os
import tempfile
import time

import numpy as np


def _latency(fn, x, repeats=50):
    """Median wall time of one call in ms, after two warm-up calls."""
    fn(x), fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000


def main():
    import keras

    from ecg_moco_tf.data import synthetic
    from ecg_moco_tf.export import FORMATS, Predictor, export_all
    from ecg_moco_tf.models import adapt_normalization, build_encoder
    from ecg_moco_tf.models.classifier import build_classifier

    keras.utils.set_random_seed(0)
    sig, _, ecg = synthetic.generate(synthetic.CohortConfig(num_patients=60, seed=4,
                                                            prevalence=0.5))
    enc = build_encoder()
    adapt_normalization(enc, sig)
    clf = build_classifier(enc)
    res = {}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        card = export_all(clf, out, sig[:64], ecg["label"].to_numpy()[:64],
                          representative=sig[64:])
        res["export_s"] = round(time.perf_counter() - t0, 1)
        for kind, r in card["parity"]["formats"].items():
            res[f"size_kb_{kind}"] = round(r["bytes"] / 1e3, 1)
            res[f"parity_max_abs_diff_{kind}"] = r["max_abs_diff"]
            res[f"parity_auc_change_{kind}"] = r.get("auc_change")
        for kind in FORMATS[1:]:
            for threads, suffix in ((1, ""), (2, "_2threads")):
                p = Predictor(os.path.join(out, f"model_{kind}.tflite"), num_threads=threads)
                res[f"tflite_latency_ms_{kind}{suffix}"] = round(_latency(p, sig[:1]), 2)
        res["tflite_latency_ms"] = res["tflite_latency_ms_float32"]
        sm = Predictor(os.path.join(out, "savedmodel"))
        res["savedmodel_latency_ms"] = round(_latency(sm, sig[:1]), 2)
        res["savedmodel_batch32_ecg_per_s"] = round(32 / (_latency(sm, sig[:32], 5) / 1000), 1)
        int8 = Predictor(os.path.join(out, "model_int8.tflite"), num_threads=2)
        res["tflite_int8_2threads_ecg_per_s"] = round(32 / (_latency(int8, sig[:32], 3) / 1000),
                                                      1)
    res["cpu_count"] = os.cpu_count()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
