"""Write a shipped encoder's folder from its pretraining run: the encoder, its config, log and
records, and MODEL_CARD.md with every figure read from the run folders (none typed by hand).

    python -m ecg_moco_tf.pretrained.card --pretrain=runs/ptbxl_pool_encoder/pretrain \
        --evaluation=runs/ptbxl_mi_fold10,runs/ptbxl_mi_cv --name=ptbxl-pool

Without ``--pretrain`` only MODEL_CARD.md is rewritten from the shipped folder's files.
"""
from __future__ import annotations

import json
import os
import shutil

import pandas as pd

from ..provenance import RECORDS_FILE, file_sha256, read_encoder_provenance
from . import HERE

FILES = ("encoder.keras", "pretrain_config.json", "pretrain_log.csv", RECORDS_FILE, "run.json")

STATIC = """## Intended use
Research: a starting point for fine-tuning (`ecg-moco finetune --encoder=ptbxl-pool`) or a
frozen feature extractor for 12-lead, 10 s resting ECGs. **Not a medical device and not for
clinical decisions**; it makes no diagnosis by itself.

## Limitations
- Small pretraining set (one institution, German patients, recording dates 1984-2001, mostly
  Schiller devices): expect weaker features on other populations, devices and filters.
- Fine-tuned figures from one fold's 105 test ECGs have wide intervals (see the cross-fold
  section for the pooled 1,040 test ECGs).
- Loading needs this package (its custom layers are registered by
  `ecg_moco_tf.load_pretrained` / `ecg_moco_tf.load_model`).

## License and citation
The weights are derived from PTB-XL, licensed **CC BY 4.0**
(https://creativecommons.org/licenses/by/4.0/): share and adapt them with attribution, citing:

- Wagner, P., Strodthoff, N., Bousseljot, R.-D., Kreiseler, D., Lunze, F. I., Samek, W.,
  Schaeffter, T. (2020). PTB-XL, a large publicly available electrocardiography dataset.
  *Scientific Data* 7, 154. https://doi.org/10.1038/s41597-020-0495-6
- Wagner, P., et al. (2022). PTB-XL, a large publicly available electrocardiography dataset
  (version 1.0.3). PhysioNet. https://doi.org/10.13026/kfzx-aw45
- Goldberger, A. L., et al. (2000). PhysioBank, PhysioToolkit, and PhysioNet. *Circulation*
  101(23), e215-e220.

The method: Nakamoto et al., Self-Supervised Contrastive Learning for Electrocardiograms to
Detect Left Ventricular Systolic Dysfunction (NeurIPS 2021 workshop); He et al., Momentum
Contrast (CVPR 2020); Chen et al., MoCo v2 (2020). The code of ecg-moco-tf is Apache-2.0.
"""


def _monitor_table(log):
    cols = ["epoch", "loss", "accuracy", "val_loss", "monitor_knn_auc", "monitor_probe_auc"]
    rows = log.dropna(subset=["monitor_probe_auc"]) if "monitor_probe_auc" in log else log.iloc[:0]
    rows = pd.concat([rows, log.tail(1)]).drop_duplicates("epoch")
    return rows[[c for c in cols if c in rows]].round(3).to_markdown(index=False)


def _evaluation_lines(evaluation):
    """Table 2 (and label efficiency) of one reproduce run folder that fine-tuned it."""
    from ..evaluation.report import table2
    from ..training.experiments import label_efficiency_markdown

    res = json.load(open(os.path.join(evaluation, "results.json")))
    run = res.get("run", {})
    cv = res["settings"].get("cross_fold")
    title = (f"Fine-tuned, cross-fold: test predictions of {len(cv['plan'])} test folds pooled"
             if cv else "Fine-tuned (paper Table 2)")
    lines = [f"## {title}", "",
             f"From `{run.get('command')}`, {run.get('date')}, commit `{run.get('commit')}` "
             f"(`{os.path.basename(evaluation)}/results.json`)"
             + (f"; data: {res['settings']['source']}" if res["settings"].get("source") else "")
             + ".", ""]
    if res.get("summary"):
        lines += [table2(res["summary"], res["delong"]), ""]
    if res.get("label_efficiency"):
        folds = (cv or {}).get("label_efficiency_folds")
        lines += ["Label efficiency" + (f" (test fold{'s' * (len(folds) > 1)} "
                                        f"{', '.join(map(str, folds))})" if folds else "")
                  + ":", "", label_efficiency_markdown(pd.DataFrame(res["label_efficiency"])),
                  ""]
    return lines


def card_text(name, folder, evaluation=()):
    """MODEL_CARD.md of the shipped encoder in ``folder``; ``evaluation``: reproduce run
    folders (results.json) that fine-tuned it."""
    cfg = json.load(open(os.path.join(folder, "pretrain_config.json")))
    if "run" not in cfg and os.path.exists(os.path.join(folder, "run.json")):
        cfg["run"] = json.load(open(os.path.join(folder, "run.json")))
    prov = read_encoder_provenance(os.path.join(folder, "encoder.keras"))
    recs = pd.read_csv(os.path.join(folder, RECORDS_FILE))
    log = pd.read_csv(os.path.join(folder, "pretrain_log.csv"))
    digest = file_sha256(os.path.join(folder, "encoder.keras"))
    per_split = recs.groupby("split").agg(ECGs=("record", "size"),
                                          patients=("patient_id", "nunique"))
    folds = recs.groupby("strat_fold").size() if "strat_fold" in recs else pd.Series(dtype=int)
    lines = [f"# {name}: a MoCo v{cfg['version']} 12-lead ECG encoder pretrained on "
             f"{len(recs):,} PTB-XL ECGs", "",
             "```python", "import ecg_moco_tf",
             f'encoder = ecg_moco_tf.load_pretrained("{name}")     # (batch, 12, 5000) mV -> '
             "(batch, 128)", "```", "",
             "| | |", "|---|---|",
             f"| file | `encoder.keras`, sha256 `{digest}` |",
             f"| made by | `{cfg.get('run', {}).get('command', 'ecg-moco pretrain')}`, "
             f"{cfg.get('run', {}).get('date', '?')}, commit "
             f"`{cfg.get('run', {}).get('commit', '?')}`; this folder holds that run's "
             f"`pretrain_config.json`, `pretrain_log.csv` and `{RECORDS_FILE}` |",
             f"| epoch kept | {prov.get('epoch')} of {cfg['epochs']}, selected by "
             f"**{prov.get('selected_by')}**; labels seen by that choice: "
             f"{'yes (' + '/'.join(prov['labels_seen_splits']) + ')' if prov.get('labels_seen') else 'none'} |",
             f"| pretraining data sha256 | `{prov.get('pretrain_data_sha256')}` |",
             "| input | float32 raw millivolts, (batch, 12, 5000): I, II, III, aVR, aVL, aVF, "
             "V1-V6, 500 Hz, 10 s; no per-ECG scaling |",
             "| output | the 128-d feature vector (before the MoCo projection head) |", "",
             "## What it saw", "",
             f"Every pretraining ECG is listed in `{RECORDS_FILE}` (ecg_id, patient_id, "
             "strat_fold, source, split, signal hash); `ecg-moco finetune` and `reproduce` warn when "
             "your data contains any of them. Labels were not used by the MoCo loss nor by "
             "the choice of epoch.", "",
             per_split.to_markdown(), "",
             "strat_folds of the pretraining ECGs: " + ", ".join(
                 f"{int(k)}: {v}" for k, v in folds.items()) + "."
             + (" None of strat_fold 9 or 10 (PTB-XL's validation and test folds)."
                if not set(folds.index) & {9, 10} else ""), "",
             "## Settings", "", "```",
             json.dumps({k: cfg[k] for k in ("epochs", "batch_size", "learning_rate",
                                             "lr_schedule", "warmup_steps", "queue_size",
                                             "momentum", "momentum_final", "temperature",
                                             "version", "shuffle_bn_splits",
                                             "augment_probability", "seed")}), "```", "",
             "## Pretraining log (the monitor's probe is logged only; it chose nothing)", "",
             _monitor_table(log), ""]
    if "monitor_probe_C" not in log:
        lines += ["The probe AUCs above used a fixed C = 1, which flatters pretrained features "
                  "against random ones; the current monitor chooses C by cross-validation "
                  "(experiments/probe_features.py compares with random encoders).", ""]
    for run_dir in evaluation:
        lines += _evaluation_lines(run_dir)
    if not evaluation:
        lines += ["## Fine-tuned", "", "Not measured yet for this encoder (Table 2 on fold 10, "
                  "label efficiency and cross-fold testing are open work).", ""]
    return "\n".join(lines + [STATIC])


def ship(pretrain_dir, name, evaluation=()):
    """Copy the run's files (``pretrain_dir`` None: none) into ``ecg_moco_tf/pretrained/<name>/``
    and write its card."""
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    for f in FILES if pretrain_dir else ():
        if os.path.exists(os.path.join(pretrain_dir, f)):
            shutil.copy(os.path.join(pretrain_dir, f), os.path.join(folder, f))
    with open(os.path.join(folder, "MODEL_CARD.md"), "w") as f:
        f.write(card_text(name, folder, evaluation))
    return folder


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain", default=None)
    ap.add_argument("--name", default="ptbxl-pool")
    ap.add_argument("--evaluation", default="", help="comma-separated reproduce run folders")
    a = ap.parse_args()
    print(ship(a.pretrain, a.name, [e for e in a.evaluation.split(",") if e]))
