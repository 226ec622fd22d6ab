"""Assign patient-wise splits (train1/valid1 pretraining, train2/valid2/test downstream).

Example: ecg-moco split --manifest=my/manifest.csv --out=my/manifest_split.csv --seed=0
Fractions default to the paper's Table 1 proportions.
"""
import sys

from absl import flags

from ecg_moco_tf.cli import common
from ecg_moco_tf.data import manifest, splits

FLAGS = flags.FLAGS
flags.DEFINE_string("manifest", None, "Input manifest (CSV or Parquet).", required=True)
flags.DEFINE_string("out", None, "Output manifest; defaults to overwriting --manifest.")
flags.DEFINE_integer("seed", 0, "Seed of the split.")
common.define_split_flags(__name__)


def main(argv):
    del argv
    df = manifest.read_manifest(FLAGS.manifest)
    df = splits.assign_splits(df, seed=FLAGS.seed, fractions=common.split_fractions_from_flags())
    out = manifest.write_manifest(df, FLAGS.out or FLAGS.manifest)
    print(splits.split_summary(df).to_string())
    print(f"wrote {out}")
    if splits.patient_labels(df).isna().all():
        print("warning: no ECG has a 0/1 label, so all went to pretraining (train1/valid1) and "
              "none to train2/valid2/test; to fine-tune, add labels: a 'label' column, or "
              "`ecg-moco manifest --labels=CSV --label_column=NAME`", file=sys.stderr)
