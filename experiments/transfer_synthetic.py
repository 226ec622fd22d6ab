"""Transfer check: MoCo pretrained on synthetic ECGs only, fine-tuned on real PTB-XL MI, against
random initialization with the same seeds.

1. A synthetic cohort (the current generator, ``--num_patients``, seed ``--cohort_seed``),
   every ECG unlabelled: patients split 80/20 into train1/valid1; MoCo with the existing
   pretraining API (``training.pretrain``; the last epoch's encoder is kept, no monitor: no
   real label reaches pretraining).
2. ``../shared/data/ptbxl-subset``, label MI, official folds: 6-8 train, 9 valid, 10 test.
   Fine-tuning settings of flags/ptbxl_mi.flags (learning rate 3e-4, 30 epochs, patience 5,
   batch-norm momentum 0.9, augmentation, dropout 0.3, weight decay 1e-4), once from the
   synthetic encoder and once from random weights, per seed.

Prints one JSON object per fine-tuning run, then a summary (per-seed test AUC, the paired
difference synthetic-pretrained minus random with a t CI over seeds).

    python experiments/transfer_synthetic.py --seeds=0,1,2 --out=/tmp/transfer_synthetic
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import argparse
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def pretrain_on_synthetic(args):
    from ecg_moco_tf.data import manifest, synthetic
    from ecg_moco_tf.data.splits import _stratified
    from ecg_moco_tf.training.pretrain import PretrainConfig, pretrain

    folder = os.path.join(args.out, "synthetic")
    df = synthetic.write_cohort(folder, synthetic.CohortConfig(
        num_patients=args.num_patients, seed=args.cohort_seed), progress=False)
    df["label"] = None                                   # unlabelled: pretraining only
    ids = np.unique(df["patient_id"])
    train, valid = _stratified(ids, np.zeros(len(ids)), 0.2, args.cohort_seed)
    df["split"] = np.where(df["patient_id"].isin(valid), "valid1", "train1")
    df = manifest.read_manifest(manifest.write_manifest(df, os.path.join(folder,
                                                                         "manifest.csv")))
    cfg = PretrainConfig(epochs=args.pretrain_epochs, batch_size=args.batch_size,
                         learning_rate=1e-3, queue_size=args.queue_size, momentum=0.99,
                         temperature=0.2, augment_probability=0.7, select="last",
                         monitor_every=0, seed=args.cohort_seed, verbose=2)
    out = os.path.join(args.out, "pretrain")
    t0 = time.perf_counter()
    pretrain(df[df["split"] == "train1"], df[df["split"] == "valid1"], out, cfg,
             overwrite=True)
    print(json.dumps({"pretrain_ecgs": int((df["split"] == "train1").sum()),
                      "pretrain_epochs": args.pretrain_epochs,
                      "pretrain_seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    return os.path.join(out, "encoder.keras")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ptbxl_root", default=os.path.join(DATA, "ptbxl-subset"))
    ap.add_argument("--num_patients", type=int, default=800)
    ap.add_argument("--cohort_seed", type=int, default=0)
    ap.add_argument("--pretrain_epochs", type=int, default=10)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--queue_size", type=int, default=512)
    ap.add_argument("--encoder", default="", help="a synthetic encoder.keras (skip pretraining)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="/tmp/transfer_synthetic")
    args = ap.parse_args()
    from ecg_moco_tf.data import ptbxl
    from ecg_moco_tf.evaluation import evaluate, mean_difference_ci
    from ecg_moco_tf.models import load_model
    from ecg_moco_tf.training.finetune import FinetuneConfig, finetune, predict

    os.makedirs(args.out, exist_ok=True)
    path = args.encoder or pretrain_on_synthetic(args)
    df = ptbxl.folds_to_splits(ptbxl.ptbxl_manifest(args.ptbxl_root, "MI"),
                               pretrain_folds=[1, 2, 3, 4, 5])
    part = {s: df[df["split"] == s] for s in ("train2", "valid2", "test")}
    auc = {"synthetic_moco": [], "random_init": []}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for init in auc:
            cfg = FinetuneConfig(learning_rates=(3e-4,), epochs=30, patience=5, bn_momentum=0.9,
                                 augment=True, dropout=0.3, weight_decay=1e-4, seed=seed,
                                 verbose=0)
            t0 = time.perf_counter()
            encoder = load_model(path) if init == "synthetic_moco" else None
            res = finetune(part["train2"], part["valid2"], encoder, cfg)
            pred = predict(res.model, part["test"])
            m = evaluate(pred["label"].astype(int), pred["probability"], pred["patient_id"],
                         n_boot=1000, seed=seed)
            auc[init].append(m["auc"])
            print(json.dumps({"init": init, "seed": seed, "test_auc": round(m["auc"], 4),
                              "test_auc_ci": [round(m["auc_ci_low"], 3),
                                              round(m["auc_ci_high"], 3)],
                              "best_epoch": int(res.sweep["best_epoch"].iloc[0]),
                              "valid_auc": round(float(res.sweep["best_val_auc"].iloc[0]), 4),
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    diff = np.subtract(auc["synthetic_moco"], auc["random_init"])
    print(json.dumps({"test_auc": {k: [round(v, 4) for v in vs] for k, vs in auc.items()},
                      "mean_test_auc": {k: round(float(np.mean(v)), 4) for k, v in auc.items()},
                      "synthetic_minus_random": {k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in mean_difference_ci(diff).items()},
                      "n_train": len(part["train2"]), "n_valid": len(part["valid2"]),
                      "n_test": len(part["test"]), "encoder": path}))


if __name__ == "__main__":
    main()
