"""How realistic is the synthetic cohort? Real PTB-XL non-MI ECGs vs synthetic negatives.

Real: the non-MI records of ../shared/data/ptbxl-subset and the NORM records of
../shared/data/ptbxl-pool (one ECG per patient). Synthetic: the negatives of a cohort made by
the current generator (``--num_patients``, ``--seed``), or any manifest given with
``--synthetic`` (e.g. a cohort written by another version of the generator). At most
``--max_records`` per side. Prints the records left out (with the reason), the comparison table
(``ecg_moco_tf.evaluation.realism``) and one JSON object last (``lead_p2p_max_rel_error``,
``discriminator_auc``, the goals of issue 16, timings); writes the figure and CSVs to --out.

    python benchmarks/bench_realism.py --out=/tmp/bench_realism
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import argparse
import json
import os
import tempfile
import time

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def real_manifest(subset, pool):
    """Non-MI ECGs of the subset plus NORM ECGs of the pool, record paths absolute."""
    from ecg_moco_tf.data.ptbxl import ptbxl_manifest

    parts = []
    for root, keep in ((subset, lambda d: d["MI"] == 0), (pool, lambda d: d["NORM"] == 1)):
        df = ptbxl_manifest(root, label=None)
        df = df[keep(df)].copy()
        df["record"] = [os.path.join(os.path.abspath(root), r) for r in df["record"]]
        parts.append(df)
    out = pd.concat(parts, ignore_index=True).drop_duplicates("record")
    out.attrs["root"] = os.sep
    return out


def synthetic_manifest(path, num_patients, seed, folder):
    from ecg_moco_tf.data import manifest, synthetic

    if path:
        df = manifest.read_manifest(path)
    else:
        cfg = synthetic.CohortConfig(num_patients=num_patients, seed=seed)
        df = synthetic.write_cohort(folder, cfg, progress=False)
        df.attrs["root"] = folder
    root = df.attrs["root"]
    df = df[(df["label"] == 0).fillna(False).astype(bool)]
    df.attrs["root"] = root
    return df


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ptbxl_subset", default=os.path.join(DATA, "ptbxl-subset"))
    ap.add_argument("--ptbxl_pool", default=os.path.join(DATA, "ptbxl-pool"))
    ap.add_argument("--synthetic", default="", help="synthetic manifest (default: generate)")
    ap.add_argument("--num_patients", type=int, default=400)
    ap.add_argument("--max_records", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--discriminator_epochs", type=int, default=8)
    ap.add_argument("--no_discriminator", action="store_true")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "bench_realism"))
    args = ap.parse_args()
    from ecg_moco_tf.evaluation import realism

    missing = [d for d in (args.ptbxl_subset, args.ptbxl_pool) if not os.path.isdir(d)]
    if missing:                          # make bench runs on machines without the real data
        print(json.dumps({"skipped": f"real PTB-XL data not found: {', '.join(missing)}"}))
        return
    t0 = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        real = real_manifest(args.ptbxl_subset, args.ptbxl_pool)
        syn = synthetic_manifest(args.synthetic, args.num_patients, args.seed, d)
        result = realism.compare_manifests(
            real, syn, max_records=args.max_records, seed=args.seed, progress=False,
            figure=os.path.join(args.out, "realism.png"),
            discriminator=not args.no_discriminator,
            discriminator_kwargs={"epochs": args.discriminator_epochs})
    result["summary"]["seconds"] = round(time.perf_counter() - t0, 1)
    result["summary"]["synthetic"] = args.synthetic or f"generated, seed {args.seed}"
    realism.save(result, args.out)
    realism.report(result)


if __name__ == "__main__":
    main()
