"""How far off is a MoCo key network in inference mode? A check of a finished pretraining run.

Loads ``<run>/pretrain/moco.keras`` and the run's manifest, draws two fixed augmented views of
up to ``--n`` valid1 ECGs (the run's augmentation settings), and prints, as JSON, the mean
positive cosine and the in-batch instance accuracy (each query's nearest key among all keys is
its own) of query and key networks in inference mode:

- ``as_saved``: the key network's moving batch-norm statistics as saved;
- ``own_statistics``: after re-estimating them from the key network's own pass on up to
  ``2 * --n`` train1 views (batches of 32, as in training).

A run saved before 2026-11-26 has key statistics that are the EMA of the query's (the bug fixed
then); its ``as_saved`` numbers are far below ``own_statistics``. A run saved since gives about
the same numbers for both.

    python experiments/key_bn_check.py --run=runs/synth_moco
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import argparse
import json
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="output folder of `ecg-moco reproduce`")
    ap.add_argument("--n", type=int, default=320, help="valid1 ECGs scored")
    args = ap.parse_args()
    import numpy as np
    import tensorflow as tf

    from ecg_moco_tf.data import load_records, read_manifest
    from ecg_moco_tf.models import load_model
    from ecg_moco_tf.training.finetune import reestimate_batch_norm
    from ecg_moco_tf.training.pretrain import PretrainConfig, _augmenter

    df = read_manifest(os.path.join(args.run, "manifest_with_splits.csv"))
    moco = load_model(os.path.join(args.run, "pretrain", "moco.keras"))
    with open(os.path.join(args.run, "pretrain", "pretrain_config.json")) as f:
        saved = json.load(f)
    aug = _augmenter(PretrainConfig(augmentations=tuple(saved["augmentations"]),
                                    augment_probability=saved["augment_probability"],
                                    augment_overrides=saved["augment_overrides"],
                                    seed=saved["seed"]))

    def views(split, n):
        part = df[df["split"] == split].iloc[:n]
        x = load_records(part, on_error="raise", progress=False).signals.astype("float32")
        return [aug.apply(x, tf.constant(s, tf.int64)).numpy() for s in ([1, 2], [3, 4])]

    def unit(z):
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    vq, vk = views("valid1", args.n)
    out = {"run": args.run, "valid1_ecgs": len(vq)}

    def score(name):
        q = unit(moco.head(moco.encoder(vq, training=False)).numpy())
        k = unit(moco.key_head(moco.key_encoder(vk, training=False)).numpy())
        out[name] = {"positive_cosine": round(float((q * k).sum(1).mean()), 3),
                     "in_batch_accuracy": round(float(((q @ k.T).argmax(1) ==
                                                       np.arange(len(q))).mean()), 3)}

    score("as_saved")
    _, tk = views("train1", 2 * args.n)
    reestimate_batch_norm(moco.key_encoder, [tk[i:i + 32] for i in range(0, len(tk), 32)])
    score("own_statistics")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
