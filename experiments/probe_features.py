"""Linear probe of frozen features: a pretrained encoder vs seeded random initialisations.

For a manifest with splits (e.g. ``runs/ptbxl_mi/manifest_with_splits.csv`` written by
``ecg-moco reproduce``) and an encoder, fits the representation monitor's probes (standardized
logistic regression, its C chosen by a seeded stratified cross-validation on train2 alone,
its folds by patient, and
cosine kNN, k = 20; ``ecg_moco_tf.training.monitor.probe_scores`` / ``probe_auc``) on the
frozen features of train2 and scores them on valid2 and, with ``--test``, on the test split
(report only, never for choices). Beside the pretrained encoder, seeded random initialisations
of the same architecture (``keras.models.clone_model`` of the pretrained encoder after
``keras.utils.set_random_seed(seed)``: its layers, freshly initialised; normalization adapted
on train2, as the unpretrained baseline starts), probed the same way, each with its own CV-chosen C. Prints
one JSON object per encoder (``probe_C``: the chosen C), then a summary JSON object last with
the pretrained - random-mean difference of probe AUC per split.

    python experiments/probe_features.py --manifest=runs/ptbxl_mi/manifest_with_splits.csv \\
        --encoder=runs/ptbxl_mi/pretrain/encoder.keras --random_seeds=0,1,2 --test
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import argparse
import json
import statistics

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", required=True, help="manifest with a split column")
    ap.add_argument("--encoder", required=True, help="pretrained encoder (.keras)")
    ap.add_argument("--random_seeds", default="0,1,2")
    ap.add_argument("--test", action="store_true", help="also score on the test split")
    ap.add_argument("--reestimate_bn", action="store_true",
                    help="first re-estimate the pretrained encoder's batch-norm statistics on "
                         "train1 (one pass in training mode, batches of 64; labels unused)")
    args = ap.parse_args(argv)

    import keras

    from ecg_moco_tf.data import load_records, read_manifest
    from ecg_moco_tf.models import adapt_normalization, load_model
    from ecg_moco_tf.training.monitor import probe_scores, split_labels

    test_note = "report only, never for choices"

    df = read_manifest(args.manifest)
    splits = ["train2", "valid2"] + (["test"] if args.test else [])
    data, train_patients = {}, None
    for s in splits:
        part = df[(df["split"] == s) & ~np.isnan(split_labels(df))]
        rec = load_records(part, on_error="raise", progress=False)
        data[s] = (rec.signals, split_labels(rec.manifest))
        if s == "train2":                         # the probe's CV folds keep patients whole
            train_patients = rec.manifest["patient_id"].astype(str).to_numpy()

    def score(name, enc):
        feats = {s: enc.predict(x, batch_size=64, verbose=0) for s, (x, _) in data.items()}
        row = {"encoder": name}
        for s in splits[1:]:
            r = probe_scores(feats["train2"], data["train2"][1], feats[s], data[s][1], seed=0,
                             train_groups=train_patients)
            row.update({f"{s}_probe_auc": round(r["probe_auc"], 4),
                        f"{s}_knn_auc": round(r["knn_auc"], 4)})
            row["probe_C"] = r["probe_C"]             # chosen on train2: the same for each split
        if "test" in splits:
            row["test"] = test_note
        print(json.dumps(row), flush=True)
        return row

    pretrained = load_model(args.encoder)
    if args.reestimate_bn:
        from ecg_moco_tf.training.finetune import reestimate_batch_norm

        x = load_records(df[df["split"] == "train1"], on_error="raise", progress=False).signals
        reestimate_batch_norm(pretrained, [x[i:i + 64] for i in range(0, len(x) - 63, 64)])
    rows = [score("pretrained", pretrained)]
    for seed in [int(s) for s in args.random_seeds.split(",") if s]:
        keras.utils.set_random_seed(seed)
        enc = keras.models.clone_model(pretrained)   # same architecture, fresh initial weights
        adapt_normalization(enc, data["train2"][0])
        rows.append(score(f"random_init_seed{seed}", enc))
    summary = {"n": {s: len(y) for s, (_, y) in data.items()}}
    if "test" in splits:
        summary["test"] = test_note
    for s in splits[1:]:
        rand = [r[f"{s}_probe_auc"] for r in rows[1:]]
        summary[f"{s}_probe_auc_pretrained"] = rows[0][f"{s}_probe_auc"]
        if rand:
            summary[f"{s}_probe_auc_random_mean"] = round(statistics.mean(rand), 4)
            summary[f"{s}_pretrained_minus_random"] = round(rows[0][f"{s}_probe_auc"]
                                                            - statistics.mean(rand), 4)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
