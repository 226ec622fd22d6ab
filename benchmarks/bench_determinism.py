"""Are two MoCo runs with the same seed bit-identical? Full-size encoder, 2 epochs on a small
synthetic cohort (178 training ECGs), two runs per setting, each setting in a fresh process:
oneDNN on (the default here) and off (ECG_MOCO_DETERMINISTIC=1). Prints one JSON object:
max |weight difference| between the two runs and seconds per run."""
import json
import os
import subprocess
import sys
import tempfile

RUN = r'''
import ecg_moco_tf, json, sys, time, numpy as np, keras
from ecg_moco_tf.data import experiment_view, manifest, splits, synthetic
from ecg_moco_tf.models import build_encoder
from ecg_moco_tf.training.pretrain import PretrainConfig, pretrain
out = sys.argv[1]
df = splits.assign_splits(synthetic.write_cohort(out, synthetic.CohortConfig(
    num_patients=150, seed=3), progress=False), seed=3)
df = manifest.read_manifest(manifest.write_manifest(df, out + "/manifest.csv"))
view = experiment_view(df, "proposed")
cfg = PretrainConfig(epochs=2, batch_size=32, queue_size=64, momentum=0.99, verbose=0)
ws, t0 = [], time.perf_counter()
for run in "ab":
    keras.utils.set_random_seed(0)
    moco, _ = pretrain(view["pretrain_train"], view["pretrain_valid"], f"{out}/{run}", cfg,
                       encoder=build_encoder())
    ws.append(np.concatenate([w.ravel() for w in moco.encoder.get_weights()]))
print(json.dumps([float(np.abs(ws[0] - ws[1]).max()), (time.perf_counter() - t0) / 2]))
'''


def main():
    out = {}
    for name, det in (("onednn_on", "0"), ("deterministic", "1")):
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        env["ECG_MOCO_DETERMINISTIC"] = det
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, "-c", RUN, d], env=env, capture_output=True,
                               text=True, check=True)
        diff, secs = json.loads(r.stdout.strip().splitlines()[-1])
        out[f"{name}_max_abs_weight_diff"] = diff
        out[f"{name}_s_per_run"] = round(secs, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
