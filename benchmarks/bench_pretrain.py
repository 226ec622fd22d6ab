"""MoCo pretraining throughput at full 12 x 5000, and the references to judge it by.

- ``moco_train_ecg_per_s_b{64,256}``: one MoCo train step (query forward + backward, key
  forward, EMA, queue) of the default encoder, ``train_on_batch`` on a constant batch inside
  tf.function; ``--steps`` timed steps after 3 warm-up steps, ``--repeats`` times, median
  (and min/max); XLA (``jit_compile``) at batch 64 only (slower on CPU);
- ``fit_steady_ecg_per_s_b64``: ``MoCo.fit`` on the real pipeline (synthetic WFDB cohort,
  cached, two augmented views per ECG, ~23 steps per epoch), median of epochs 2 and 3 (the
  first one reads and caches);
- ``peak_rss_mb_*``: VmHWM of the child process that ran the configuration;
- ``achieved_gflop_per_s``: analytic FLOPs of the step (4x the forward: query forward +
  backward ~3x, key forward 1x) times the step rate;
- with ``--references`` (default), in the same session: ``../shared/bench/sgemm_peak.py``
  (``sgemm_gflops``) and ``../shared/bench/torch_moco_ref.py`` with ``CHANNELS_LAST=1`` at
  batch 64 and 256 (``torch_moco_train_ecg_per_s_b*``, run with ``--torch_python``, default
  ``../torchenv/bin/python``), and the ratios the speed goals are stated in.

Each configuration runs in a fresh subprocess. Prints one JSON object last.
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_BENCH = os.path.join(HERE, "..", "..", "shared", "bench")


def _peak_rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def _step(batch, mode, steps, repeats):
    import keras
    import tensorflow as tf

    from ecg_moco_tf.models import MoCo, build_encoder, encoder_flops

    enc = build_encoder()
    moco = MoCo(enc, queue_size=4096, seed=0, shuffle_bn_splits=2)
    moco.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=(mode == "xla"))
    x = tf.random.normal([batch, 12, 5000], seed=0) * 0.3
    data = (x, x + 0.01)
    for _ in range(3):
        moco.train_on_batch(data)                                  # trace / compile, warm up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            logs = moco.train_on_batch(data, return_dict=True)
        rates.append(batch * steps / (time.perf_counter() - t0))
    head = sum(2 * layer.input.shape[-1] * layer.units for layer in moco.head.layers
               if isinstance(layer, keras.layers.Dense))
    return {"rates": rates, "peak_rss_mb": _peak_rss_mb(), "loss": float(logs["loss"]),
            "flops_per_ecg": 4 * (encoder_flops(enc) + head)}


def _fit(batch, num_patients):
    import keras

    from ecg_moco_tf.augment import build_augmenter
    from ecg_moco_tf.data import experiment_view, manifest, pipeline, splits, synthetic
    from ecg_moco_tf.models import MoCo, build_encoder
    from ecg_moco_tf.training.callbacks import EpochTimer

    with tempfile.TemporaryDirectory() as tmp:
        df = synthetic.write_cohort(tmp, synthetic.CohortConfig(num_patients=num_patients,
                                                                 seed=0), progress=False)
        df = manifest.read_manifest(manifest.write_manifest(
            splits.assign_splits(df, seed=0), os.path.join(tmp, "m.csv")))
        train = experiment_view(df, "proposed")["pretrain_train"]
        ds = pipeline.two_view(pipeline.manifest_dataset(train, shuffle=True, cache=""),
                               build_augmenter(seed=0), batch)
        keras.utils.set_random_seed(0)
        moco = MoCo(build_encoder(), queue_size=256, seed=0, shuffle_bn_splits=2)
        moco.compile(optimizer=keras.optimizers.Adam(1e-3))
        clock = EpochTimer()
        moco.fit(ds, epochs=3, verbose=0, callbacks=[clock])
        times = clock.times
        steps = len(train) // batch
    return {"rates": [steps * batch / t for t in times[1:]], "first_epoch_s": times[0],
            "steps_per_epoch": steps, "peak_rss_mb": _peak_rss_mb()}


def _child(*args):
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                         capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reference(cmd, env=None):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                             timeout=1200)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per repeat (20)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported (3)")
    ap.add_argument("--fit_patients", type=int, default=1400,
                    help="synthetic patients of the fit() cohort (1400: ~23 steps an epoch)")
    ap.add_argument("--no_references", dest="references", action="store_false",
                    help="skip the sgemm and PyTorch reference runs")
    ap.add_argument("--torch_python", default=os.path.join(HERE, "..", "..", "torchenv", "bin",
                                                           "python"),
                    help="Python with torch for the reference (../torchenv/bin/python)")
    args = ap.parse_args()
    import tensorflow as tf

    from tensorflow.python.util import _pywrap_util_port

    res = {"onednn": bool(_pywrap_util_port.IsMklEnabled()),   # what TensorFlow reports
           "tensorflow": tf.__version__, "cpu_count": os.cpu_count(),
           "steps": args.steps, "repeats": args.repeats}
    runs = [("b64", ("step", 64, "graph", args.steps, args.repeats)),
            ("b256", ("step", 256, "graph", args.steps, args.repeats)),
            ("b64_xla", ("step", 64, "xla", args.steps, 1)),
            ("fit_b64", ("fit", 64, args.fit_patients))]
    for name, child_args in runs:
        r = _child(*child_args)
        key = ("fit_steady_ecg_per_s_b64" if name == "fit_b64"
               else f"moco_train_ecg_per_s_{name}")
        if "error" in r:
            res[key], res[f"error_{name}"] = None, r["error"]
            continue
        res[key] = round(statistics.median(r["rates"]), 1)
        if len(r["rates"]) > 1:
            res[f"{key}_min_max"] = [round(min(r["rates"]), 1), round(max(r["rates"]), 1)]
        res[f"peak_rss_mb_{name}"] = round(r["peak_rss_mb"])
        if "flops_per_ecg" in r:
            res["train_step_flops_per_ecg"] = r["flops_per_ecg"]
    flops = res.get("train_step_flops_per_ecg")
    best = max((res[k] for k in ("moco_train_ecg_per_s_b64", "moco_train_ecg_per_s_b256")
                if res.get(k)), default=None)
    if flops and best:
        res["achieved_gflop_per_s"] = round(best * flops / 1e9, 1)
    if args.references:
        sgemm = _reference([sys.executable, os.path.join(SHARED_BENCH, "sgemm_peak.py")])
        if sgemm and res.get("achieved_gflop_per_s"):
            res["sgemm_gflops"] = sgemm["sgemm_gflops"]
            res["share_of_sgemm_peak"] = round(res["achieved_gflop_per_s"]
                                               / sgemm["sgemm_gflops"], 3)
        for batch in (64, 256):
            ref = _reference([args.torch_python, os.path.join(SHARED_BENCH, "torch_moco_ref.py"),
                              str(batch)], env={"CHANNELS_LAST": "1"})
            if ref:
                res[f"torch_moco_train_ecg_per_s_b{batch}"] = ref["moco_train_ecg_per_s"]
                ours = res.get(f"moco_train_ecg_per_s_b{batch}")
                if ours:
                    res[f"ratio_vs_torch_b{batch}"] = round(ours / ref["moco_train_ecg_per_s"],
                                                            2)
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "step":
            print(json.dumps(_step(int(rest[0]), rest[1], int(rest[2]), int(rest[3]))))
        else:
            print(json.dumps(_fit(int(rest[0]), int(rest[1]))))
    else:
        main()
