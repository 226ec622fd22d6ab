"""Write a pretraining manifest of synthetic ECGs (``--synth``; its patients go to train1
and, for ``--valid_share`` of them (seeded), valid1; labels dropped: pretraining is
unlabelled), with ``--pool`` also the real pool's rows (its train1/valid1 pretrain; candidate
(c)). Record paths are made absolute so the manifest can live anywhere."""
import argparse
import os

import numpy as np
import pandas as pd


def absolute(df, manifest):
    root = os.path.dirname(os.path.abspath(manifest))
    return df["record"].map(lambda r: os.path.normpath(os.path.join(root, r)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool")
    ap.add_argument("--synth", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--valid_share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    pool = pd.DataFrame()
    if a.pool:
        pool = pd.read_csv(a.pool)
        pool["record"] = absolute(pool, a.pool)
        pool["source"] = "ptbxl"
    syn = pd.read_csv(a.synth)
    syn["record"] = absolute(syn, a.synth)
    patients = np.sort(syn["patient_id"].astype(str).unique())
    rng = np.random.default_rng(a.seed)
    valid = set(rng.choice(patients, int(round(a.valid_share * len(patients))), replace=False))
    syn = pd.DataFrame({"record": syn["record"], "patient_id": "synth_" + syn["patient_id"].astype(str),
                        "split": np.where(syn["patient_id"].astype(str).isin(valid), "valid1", "train1"),
                        "source": "synthetic"})
    out = pd.concat([pool, syn], ignore_index=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    out.to_csv(a.out, index=False)
    print(out.groupby(["source", "split"]).size().to_string())


if __name__ == "__main__":
    main()
