"""Assign patient-wise splits (train1/valid1 pretraining, train2/valid2/test downstream).

Example: ecg-moco split --manifest=my/manifest.csv --out=my/manifest_split.csv --seed=0
Fractions default to the paper's Table 1 proportions.
"""
import sys

from absl import flags

from ecg_moco_tf.data import manifest, splits

FLAGS = flags.FLAGS
flags.DEFINE_string("manifest", None, "Input manifest (CSV or Parquet).", required=True)
flags.DEFINE_string("out", None, "Output manifest; defaults to overwriting --manifest.")
flags.DEFINE_integer("seed", 0, "Seed of the split.")
_D = splits.SplitFractions()
flags.DEFINE_float("downstream_negative_fraction", _D.downstream_negative_fraction,
                   "Share of negative patients sent downstream (the rest pretrain).")
flags.DEFINE_float("valid1", _D.valid1, "Share of the pretraining pool used as valid1.")
flags.DEFINE_float("valid2", _D.valid2, "Share of the downstream pool used as valid2.")
flags.DEFINE_float("test", _D.test, "Share of the downstream pool used as test.")


def main(argv):
    del argv
    df = manifest.read_manifest(FLAGS.manifest)
    fr = splits.SplitFractions(FLAGS.downstream_negative_fraction, FLAGS.valid1, FLAGS.valid2,
                               FLAGS.test)
    df = splits.assign_splits(df, seed=FLAGS.seed, fractions=fr)
    out = manifest.write_manifest(df, FLAGS.out or FLAGS.manifest)
    print(splits.split_summary(df).to_string())
    print(f"wrote {out}")
    if splits.patient_labels(df).isna().all():
        print("warning: no ECG has a 0/1 label, so all went to pretraining (train1/valid1) and "
              "none to train2/valid2/test; to fine-tune, add labels: a 'label' column, or "
              "`ecg-moco manifest --labels=CSV --label_column=NAME`", file=sys.stderr)
