"""MoCo pretraining throughput at full 12 x 5000: batch 64 and 256; eager, tf.function, XLA.

Each configuration runs in a fresh subprocess (peak memory = its VmHWM). FLOPs per ECG of one
train step are counted analytically: query forward + backward (~3x forward) + key forward
= 4x the forward FLOPs of encoder and head. Prints one JSON object.
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import json
import os
import subprocess
import sys
import time


def _run(batch, mode, steps):
    import keras
    import numpy as np
    import tensorflow as tf

    from ecg_moco_tf.models import MoCo, build_encoder, encoder_flops

    enc = build_encoder()
    moco = MoCo(enc, queue_size=4096, seed=0)
    moco.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=(mode == "eager"),
                 jit_compile=(mode == "xla"))
    x = tf.random.normal([batch, 12, 5000], seed=0) * 0.3
    data = (x, x + 0.01)
    moco.train_on_batch(data)                                  # trace / compile
    t0 = time.perf_counter()
    for _ in range(steps):
        logs = moco.train_on_batch(data, return_dict=True)
    dt = time.perf_counter() - t0
    head = sum(2 * l.input.shape[-1] * l.units for l in moco.head.layers
               if isinstance(l, keras.layers.Dense))
    with open("/proc/self/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    return {"ecg_per_s": batch * steps / dt, "peak_rss_mb": hwm,
            "flops_per_ecg": 4 * (encoder_flops(enc) + head), "loss": float(logs["loss"])}


def main():
    res = {}
    for batch in (64, 256):
        for mode in ("eager", "graph", "xla"):
            steps = 1 if (mode == "eager" or batch == 256) else 3
            out = subprocess.run([sys.executable, __file__, "--child", str(batch), mode,
                                  str(steps)], capture_output=True, text=True)
            if out.returncode:
                res[f"moco_train_ecg_per_s_b{batch}_{mode}"] = None
                res[f"error_b{batch}_{mode}"] = out.stderr.strip().splitlines()[-1][:200]
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            res[f"moco_train_ecg_per_s_b{batch}_{mode}"] = round(r["ecg_per_s"], 2)
            res[f"peak_rss_mb_b{batch}_{mode}"] = round(r["peak_rss_mb"])
            res["train_step_flops_per_ecg"] = r["flops_per_ecg"]
    best = max(v for k, v in res.items() if k.startswith("moco_train") and v)
    res["achieved_gflop_per_s_best"] = round(best * res["train_step_flops_per_ecg"] / 1e9, 1)
    res["cpu_count"] = os.cpu_count()
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_run(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
    else:
        main()
