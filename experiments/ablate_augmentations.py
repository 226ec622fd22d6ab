"""Which of the paper's five augmentations help MoCo on the synthetic LVSD task, which hurt?

A synthetic cohort (``CohortConfig(num_patients, seed)``, the paper's splits), then MoCo
pretraining on train1/valid1 (labels unused) with

- ``all``: the paper's five transforms (GaussianNoise, GaussianSmoothing, RandomErasing,
  TimeResize, BaselineShift);
- ``-Name``: all five but ``Name`` (one run per transform, 5 runs);
- ``+Name`` for each ``--add`` transform (e.g. ``--add=RandomResizedCrop``): all five and it;
- ``random_init``: no pretraining (the same initial encoder, normalization adapted on train1):
  the floor pretraining must beat.

Each run is scored by a linear probe on the frozen query encoder's features (standardized,
scikit-learn ``LogisticRegression``, fit on train2, ROC AUC on valid2; the test split is never
read) and by MoCo's final instance-discrimination top-1 accuracy (train: last epoch's mean; val:
valid1 with fixed views). An accuracy near 1 means the pretext task is too easy for the
transforms; a probe AUC below ``all`` after leaving a transform out means that transform helps.
Time resizing and smoothing can erase QRS width, the synthetic phenotype's cue.

Every run starts from the same initial encoder weights and data order (same seed); ``--seeds``
repeats the whole set with other seeds (mean and std in the summary). Prints one JSON object per
run, then a summary table (Markdown) and the JSON list of all rows last.

Defaults are small (about 10-15 min on 2 CPU cores); make it bigger with e.g.

    python experiments/ablate_augmentations.py --num_patients=1000 --epochs=20 \\
        --encoder=paper --seeds=0,1,2 --add=RandomResizedCrop

Smoke test: ``--num_patients=60 --epochs=1``.
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import argparse
import json
import os
import statistics
import tempfile
import time

PAPER = ("GaussianNoise", "GaussianSmoothing", "RandomErasing", "TimeResize", "BaselineShift")
# encoder sizes (``build_encoder`` kwargs); "paper" is the default encoder of the paper
ENCODERS = {
    "tiny": dict(kernel_sizes=(5, 3), filters=(4, 8), pools=(8, 8), spatial_filters=8,
                 feature_dim=16),
    "small": dict(kernel_sizes=(5, 5, 3, 3), filters=(8, 8, 16, 16), pools=(4, 4, 4, 4),
                  spatial_filters=16, feature_dim=32),
    "paper": {},
}


def _args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num_patients", type=int, default=300)
    ap.add_argument("--prevalence", type=float, default=0.10)
    ap.add_argument("--phenotype_scale", type=float, default=None,
                    help="CohortConfig.phenotype_scale (default: the cohort's default)")
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds")
    ap.add_argument("--cohort_seed", type=int, default=0)
    ap.add_argument("--encoder", choices=sorted(ENCODERS), default="small")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch_size", type=int, default=32,
                    help="capped at the valid1 size (even: 2 shuffle-BN groups)")
    ap.add_argument("--learning_rate", type=float, default=1e-3)
    ap.add_argument("--lr_schedule", choices=("constant", "cosine"), default="cosine")
    ap.add_argument("--warmup_steps", type=int, default=None,
                    help="default: 10%% of the run's steps")
    ap.add_argument("--queue_size", type=int, default=None,
                    help="default: min(1024, train1 ECGs // 2)")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--momentum_final", type=float, default=0.99,
                    help="cosine key-momentum schedule end; negative: constant --momentum")
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--augment_probability", type=float, default=0.5)
    ap.add_argument("--augment_overrides", default="",
                    help='JSON, e.g. \'{"GaussianNoise": {"max_std_mv": 0.1}}\'; an override '
                         "of a transform a run leaves out is dropped for that run")
    ap.add_argument("--add", default="", help="extra transforms, one '+Name' run each")
    ap.add_argument("--only", default="", help="run only these (e.g. 'all,-TimeResize')")
    ap.add_argument("--probe_C", type=float, default=1.0)
    ap.add_argument("--out", default="", help="keep cohort and runs here (default: a temp dir)")
    return ap.parse_args()


def _runs(args):
    runs = [("all", PAPER)] + [(f"-{n}", tuple(t for t in PAPER if t != n)) for n in PAPER]
    runs += [(f"+{n}", PAPER + (n,)) for n in filter(None, args.add.split(","))]
    runs.append(("random_init", None))
    only = set(filter(None, args.only.split(",")))
    return [r for r in runs if not only or r[0] in only]


def _probe(train_x, train_y, valid_x, valid_y, C):
    """Standardized logistic regression fit on train, AUC on valid (None: a class missing)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2 or len(np.unique(valid_y)) < 2:
        return None
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
    clf.fit(train_x, train_y)
    return float(roc_auc_score(valid_y, clf.predict_proba(valid_x)[:, 1]))


def _one(name, transforms, seed, args, data, overrides, work):
    import keras
    import numpy as np

    from ecg_moco_tf.data import pipeline
    from ecg_moco_tf.models import build_encoder
    from ecg_moco_tf.models.encoder import adapt_normalization
    from ecg_moco_tf.training.pretrain import PretrainConfig, pretrain, total_steps

    train1, valid1 = data["pretrain_train"], data["pretrain_valid"]
    steps = total_steps(PretrainConfig(epochs=args.epochs, batch_size=args.batch_size),
                        len(train1))
    row = {"run": name, "seed": seed, "transforms": list(transforms or []), "steps": steps}
    t0 = time.perf_counter()
    keras.utils.set_random_seed(seed)                # same initial encoder in every run
    encoder = build_encoder(**ENCODERS[args.encoder])
    if transforms is None:                           # random_init: no pretraining
        adapt_normalization(encoder, pipeline.manifest_dataset(train1).batch(args.batch_size))
        row.update(loss=None, train_accuracy=None, val_accuracy=None)
    else:
        warmup = (args.warmup_steps if args.warmup_steps is not None
                  else max(1, steps // 10) if args.lr_schedule == "cosine" else 0)
        cfg = PretrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            queue_size=args.queue_size or min(1024, len(train1) // 2),
            momentum=args.momentum,
            momentum_final=args.momentum_final if args.momentum_final >= 0 else None,
            temperature=args.temperature, augmentations=tuple(transforms),
            augment_probability=args.augment_probability,
            augment_overrides={k: v for k, v in overrides.items() if k in transforms},
            lr_schedule=args.lr_schedule, warmup_steps=warmup, seed=seed, verbose=0,
            monitor_every=0, select="last")
        moco, hist = pretrain(train1, valid1, os.path.join(work, f"{name}_seed{seed}"), cfg,
                              encoder=encoder, overwrite=True)
        encoder = moco.encoder
        row.update(loss=float(hist["loss"][-1]), train_accuracy=float(hist["accuracy"][-1]),
                   val_accuracy=float(hist["val_accuracy"][-1]),
                   queue_size=cfg.queue_size, warmup_steps=warmup)
    feats = {s: encoder.predict(data[s + "_x"], batch_size=64, verbose=0) for s in
             ("train", "valid")}
    row["probe_auc"] = _probe(feats["train"], data["train_y"], feats["valid"], data["valid_y"],
                              args.probe_C)
    row["feature_std"] = float(np.mean(np.std(feats["valid"], axis=0)))
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def _fmt(values, digits=3):
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _summary(rows):
    """Markdown table: one line per run (mean ± std over seeds), probe AUC change vs ``all``."""
    names = list(dict.fromkeys(r["run"] for r in rows))
    base = {r["seed"]: r["probe_auc"] for r in rows if r["run"] == "all"}
    lines = ["| run | probe AUC (valid2) | Δ vs all | train acc | val acc | final loss | s |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        rs = [r for r in rows if r["run"] == name]
        delta = [r["probe_auc"] - base[r["seed"]] for r in rs
                 if r["probe_auc"] is not None and base.get(r["seed"]) is not None]
        lines.append(f"| {name} | {_fmt([r['probe_auc'] for r in rs])} | "
                     f"{_fmt(delta) if name != 'all' else '-'} | "
                     f"{_fmt([r['train_accuracy'] for r in rs])} | "
                     f"{_fmt([r['val_accuracy'] for r in rs])} | "
                     f"{_fmt([r['loss'] for r in rs])} | "
                     f"{_fmt([r['seconds'] for r in rs], 0)} |")
    return "\n".join(lines)


def main():
    args = _args()
    import numpy as np
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")     # retracing warnings: a new model per run, expected

    from ecg_moco_tf.augment import build_augmenter
    from ecg_moco_tf.data import (assign_splits, experiment_view, load_records, manifest,
                                  synthetic)

    overrides = json.loads(args.augment_overrides) if args.augment_overrides else {}
    build_augmenter(list(PAPER) + [n for n in args.add.split(",") if n], **overrides)  # check
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or tmp
        os.makedirs(work, exist_ok=True)
        kw = {} if args.phenotype_scale is None else {"phenotype_scale": args.phenotype_scale}
        cohort_cfg = synthetic.CohortConfig(num_patients=args.num_patients,
                                            prevalence=args.prevalence, seed=args.cohort_seed,
                                            **kw)
        cohort = os.path.join(work, "cohort")
        df = synthetic.write_cohort(cohort, cohort_cfg, progress=False)
        df = assign_splits(df, seed=args.cohort_seed)
        df = manifest.read_manifest(manifest.write_manifest(df, os.path.join(cohort,
                                                                             "manifest.csv")))
        data = dict(experiment_view(df, "proposed"))
        n_valid1 = len(data["pretrain_valid"])
        if args.batch_size > n_valid1:               # pretrain needs one whole valid1 batch
            args.batch_size = max(4, n_valid1 - n_valid1 % 2)
        for s in ("train", "valid"):                 # train2 / valid2 (never the test split)
            rec = load_records(data[s], progress=False)
            data[s + "_x"] = rec.signals
            data[s + "_y"] = np.asarray(rec.manifest["label"], int)
        print(json.dumps({"cohort": {"patients": args.num_patients, "ecgs": len(df),
                                     "train1": len(data["pretrain_train"]),
                                     "valid1": len(data["pretrain_valid"]),
                                     "train2": len(data["train_x"]),
                                     "train2_positives": int(data["train_y"].sum()),
                                     "valid2": len(data["valid_x"]),
                                     "valid2_positives": int(data["valid_y"].sum())},
                          "encoder": args.encoder, "epochs": args.epochs,
                          "batch_size": args.batch_size}), flush=True)
        rows = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name, transforms in _runs(args):
                row = _one(name, transforms, seed, args, data, overrides, work)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(_summary(rows))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
