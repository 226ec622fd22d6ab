"""Augmentation throughput (two views per ECG) and streaming memory. Prints one JSON object.

- augment_ecg_per_s: the paper's five transforms (probability 0.5 each), two views per ECG,
  12 x 5000, batch 64, on in-memory batches (no reader) and through the full manifest
  pipeline (WFDB reader + augmentation);
- augment_ms_per_batch: each transform alone (probability 0.5), one view of a batch of 64;
- stream_peak_rss_mb: peak RSS of a process that streams a whole epoch from a manifest of
  1x and 10x the demo cohort (measured in fresh subprocesses).
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

DEMO_PATIENTS = 400


def _seconds_per_call(fn, x, batches=20, repeats=3):
    """Median over ``repeats`` of the mean time of ``batches`` calls ``fn(x, seed)``
    (tf.function, after a warm-up call; the last output is read back, so all calls ran)."""
    import statistics

    import numpy as np
    import tensorflow as tf

    f = tf.function(fn)
    f(x, tf.constant([0, 0], tf.int64))
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(batches):
            out = f(x, tf.constant([r, i], tf.int64))
        _ = float(np.asarray(tf.nest.flatten(out)[0]).sum())
        times.append((time.perf_counter() - t0) / batches)
    return statistics.median(times)


def _augment_rates(batch=64):
    """(two-view ECG/s of the paper's five, {transform: ms per one-view batch})."""
    import tensorflow as tf

    from ecg_moco_tf.augment import PAPER_TRANSFORMS, RandomAugment
    from ecg_moco_tf.data import synthetic

    x = tf.constant(synthetic.generate(synthetic.CohortConfig(num_patients=40))[0][:batch])
    aug = RandomAugment.default()
    two = _seconds_per_call(lambda x, s: (aug.apply(x, s), aug.apply(x, s + 1)), x)
    each = {k.__name__: round(1000 * _seconds_per_call(k(probability=0.5).apply, x), 2)
            for k in PAPER_TRANSFORMS}
    return batch / two, each


def _stream(manifest_path, augment):
    from ecg_moco_tf.augment import RandomAugment
    from ecg_moco_tf.data import read_manifest
    from ecg_moco_tf.data import pipeline as P

    df = read_manifest(manifest_path)
    ds = P.manifest_dataset(df, shuffle=True, seed=0)
    ds = P.two_view(ds, RandomAugment.default(), 64) if augment else P.supervised(ds, 64)
    t0, n = time.perf_counter(), 0
    for a, _ in ds:
        n += int(a.shape[0])
    return {"ecgs": n, "ecg_per_s": n / (time.perf_counter() - t0),
            "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb():
    """VmHWM of this process (ru_maxrss would include the parent's peak across fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(manifest_path, augment):
    out = subprocess.run([sys.executable, __file__, "--child", manifest_path, str(int(augment))],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    from ecg_moco_tf.data import manifest, synthetic

    rate, each = _augment_rates()
    res = {"augment_ecg_per_s": round(rate, 1), "augment_ms_per_batch": each}
    with tempfile.TemporaryDirectory() as tmp:
        for mult in (1, 10):
            d = os.path.join(tmp, f"x{mult}")
            df = synthetic.write_cohort(d, synthetic.CohortConfig(
                num_patients=DEMO_PATIENTS * mult, seed=mult), progress=False)
            path = manifest.write_manifest(df, os.path.join(d, "manifest.csv"))
            if mult == 1:
                r = _child(path, True)
                res["augment_with_reader_ecg_per_s"] = round(r["ecg_per_s"], 1)
            r = _child(path, False)
            res[f"stream_peak_rss_mb_{mult}x"] = round(r["peak_rss_mb"], 1)
            res[f"stream_ecgs_{mult}x"] = r["ecgs"]
            res[f"stream_read_ecg_per_s_{mult}x"] = round(r["ecg_per_s"], 1)
    res["cpu_count"] = os.cpu_count()
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_stream(sys.argv[2], sys.argv[3] == "1")))
    else:
        main()
