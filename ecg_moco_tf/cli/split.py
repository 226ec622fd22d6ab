"""Assign patient-wise splits (train1/valid1 pretraining, train2/valid2/test downstream).

Example: ecg-moco split --manifest=my/manifest.csv --design=finetune --seed=0
--design: paper (the paper's Table 1: every positive patient and 22.6 % of the negatives
downstream, the rest pretrain), finetune (all labelled patients to train2/valid2/test at the
data's own prevalence, no train1/valid1: fine-tuning a pretrained encoder on all your labels),
pretrain (everything to train1/valid1: an unlabelled pool). Writes --out (default: a new file
beside the input, <name>_splits.csv); replacing a file, or splits the manifest already has,
needs --overwrite.
"""
import os
import sys

from absl import flags

from ecg_moco_tf.cli import common
from ecg_moco_tf.data import manifest, splits

FLAGS = flags.FLAGS
flags.DEFINE_string("manifest", None, "Input manifest (CSV or Parquet).", required=True)
flags.DEFINE_enum("design", "paper", list(splits.DESIGNS), "paper: the paper's LVSD design "
                  "(pretraining pool of negatives); finetune: all labelled patients "
                  "downstream at their own prevalence; pretrain: all to train1/valid1.")
flags.DEFINE_string("out", None, "Output manifest (default: <input name>_splits.csv beside "
                    "the input).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --out, and the splits a manifest "
                  "already has.")
flags.DEFINE_integer("seed", 0, "Seed of the split.")
common.define_split_flags(__name__)


def default_out(path):
    stem, ext = os.path.splitext(path)
    return f"{stem}_splits{ext or '.csv'}"


def main(argv):
    del argv
    out = FLAGS.out or default_out(FLAGS.manifest)
    df = manifest.read_manifest(FLAGS.manifest)
    if not FLAGS.overwrite and not os.path.isdir(out):   # a folder: write_manifest says so
        if os.path.exists(out):
            raise SystemExit(f"--out={out} exists: choose another --out, or pass --overwrite "
                             "to replace it")
        has = df["split"].notna().sum() if "split" in df else 0
        if has:
            raise SystemExit(f"{FLAGS.manifest} already has splits ({has} of {len(df)} ECGs "
                             "assigned): pass --overwrite to replace them with new ones")
    df = splits.assign_splits(df, seed=FLAGS.seed, fractions=common.split_fractions_from_flags(),
                              design=FLAGS.design)
    out = manifest.write_manifest(df, out)
    print(splits.split_summary(df).to_string())
    lab = df["label"].notna()
    used = lab & df["split"].isin(["train2", "valid2", "test"])
    print(f"design {FLAGS.design}: {int(used.sum())} of the {int(lab.sum())} labelled ECGs are "
          "in train2/valid2/test")
    print(f"wrote {out}")
    if df["split"].isna().any():
        print(f"{int(df['split'].isna().sum())} unlabelled ECGs have no split (design "
              f"{FLAGS.design} has no pretraining splits); --design=paper or pretrain puts "
              "them in train1/valid1", file=sys.stderr)
    if splits.patient_labels(df).isna().all() and FLAGS.design != "pretrain":
        print("warning: no ECG has a 0/1 label, so none went to train2/valid2/test; to "
              "fine-tune, add labels: a 'label' column, or `ecg-moco manifest --labels=CSV "
              "--label_column=NAME`", file=sys.stderr)
