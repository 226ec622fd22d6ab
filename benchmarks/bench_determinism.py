"""Are two MoCo runs with the same seed bit-identical, one after the other and at the same time?

Full-size encoder, 2 epochs on a small synthetic cohort, defaults (oneDNN on). Runs (each a
fresh process): a, then b, then c and d started together (sharing the 2 cores). Prints one JSON
object: max |weight difference| of the pretrained encoders, a vs b (in a row) and a vs c and c
vs d (at the same time), and seconds per run alone and together.
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import json
import os
import subprocess
import sys
import tempfile
import time

RUN = r'''
import ecg_moco_tf, sys, keras, numpy as np
from ecg_moco_tf.data import experiment_view, read_manifest
from ecg_moco_tf.models import build_encoder
from ecg_moco_tf.training.pretrain import PretrainConfig, pretrain
view = experiment_view(read_manifest(sys.argv[1]), "proposed")
cfg = PretrainConfig(epochs=2, batch_size=32, queue_size=64, momentum=0.99, verbose=0)
keras.utils.set_random_seed(0)
moco, _ = pretrain(view["pretrain_train"], view["pretrain_valid"], sys.argv[2], cfg,
                   encoder=build_encoder())
np.save(sys.argv[2] + "/w.npy", np.concatenate([w.ravel() for w in moco.encoder.get_weights()]))
'''


def main():
    import numpy as np

    from ecg_moco_tf.data import manifest, splits, synthetic

    with tempfile.TemporaryDirectory() as d:
        df = splits.assign_splits(synthetic.write_cohort(d, synthetic.CohortConfig(
            num_patients=150, seed=3), progress=False), seed=3)
        path = manifest.write_manifest(df, os.path.join(d, "manifest.csv"))

        def start(run):
            return subprocess.Popen([sys.executable, "-c", RUN, path, os.path.join(d, run)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def finish(*procs):
            for p in procs:
                if p.wait():
                    raise RuntimeError(p.stderr.read().decode()[-2000:])

        t0 = time.perf_counter()
        finish(start("a"))
        alone = time.perf_counter() - t0
        finish(start("b"))
        t0 = time.perf_counter()
        finish(start("c"), start("d"))
        together = time.perf_counter() - t0
        w = {r: np.load(os.path.join(d, r, "w.npy")) for r in "abcd"}
    print(json.dumps({"in_a_row_max_abs_weight_diff": float(np.abs(w["a"] - w["b"]).max()),
                      "together_max_abs_weight_diff": float(np.abs(w["c"] - w["d"]).max()),
                      "alone_vs_together_max_abs_weight_diff": float(np.abs(w["a"] - w["c"]).max()),
                      "s_per_run_alone": round(alone, 1), "s_two_runs_together": round(together, 1),
                      "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"}))


if __name__ == "__main__":
    main()
