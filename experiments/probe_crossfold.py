"""Linear probe of frozen features on every test fold of a cross-fold run.

For each ``<cv_run>/fold_*/manifest_with_splits.csv`` that ``ecg-moco reproduce --cv_folds``
wrote, runs ``probe_features.py`` (probe fit on the fold's train2 with C chosen by a
patient-grouped CV there, scored on valid2 and, report only, on the test fold) for the
pretrained encoder and seeded random initialisations. Prints each fold's summary, then one
JSON object with the mean over folds of each split's pretrained - random-mean difference.

    python experiments/probe_crossfold.py --cv_run=runs/ptbxl_mi_cv \\
        --encoder=ecg_moco_tf/pretrained/ptbxl-pool/encoder.keras --random_seeds=0,1,2
"""
import argparse
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import probe_features  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv_run", required=True, help="output folder of reproduce --cv_folds")
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--random_seeds", default="0,1,2")
    args = ap.parse_args(argv)
    folds = sorted(glob.glob(os.path.join(args.cv_run, "fold_*", "manifest_with_splits.csv")))
    if not folds:
        raise SystemExit(f"{args.cv_run} has no fold_*/manifest_with_splits.csv: give the --out "
                         "of an `ecg-moco reproduce --cv_folds` run")
    per_fold = {}
    for path in folds:
        name = os.path.basename(os.path.dirname(path))
        print(f"# {name}", flush=True)
        per_fold[name] = probe_features.main([f"--manifest={path}", f"--encoder={args.encoder}",
                                              f"--random_seeds={args.random_seeds}", "--test"])
    out = {"folds": len(per_fold), "test": "report only, never for choices"}
    for s in ("valid2", "test"):
        for key in ("probe_auc_pretrained", "probe_auc_random_mean", "pretrained_minus_random"):
            vals = [f[f"{s}_{key}"] for f in per_fold.values() if f"{s}_{key}" in f]
            if vals:
                out[f"{s}_{key}_mean_over_folds"] = round(statistics.mean(vals), 4)
        diffs = [f[f"{s}_pretrained_minus_random"] for f in per_fold.values()
                 if f"{s}_pretrained_minus_random" in f]
        out[f"{s}_pretrained_minus_random_per_fold"] = diffs
    print(json.dumps(out))


if __name__ == "__main__":
    main()
