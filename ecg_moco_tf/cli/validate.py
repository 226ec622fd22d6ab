"""Read every record of a manifest and print a table of problems (exit status 1 if any).

Example: ecg-moco validate --manifest=data/synth/manifest.csv
"""
import os

from absl import flags

from ecg_moco_tf.data import manifest, splits
from ecg_moco_tf.data.records import ReadOptions

FLAGS = flags.FLAGS
flags.DEFINE_string("manifest", None, "Manifest (CSV or Parquet) to check.", required=True)
flags.DEFINE_float("min_seconds", 5.0, "Shortest accepted record, seconds.")
flags.DEFINE_string("report", None, "Also write the problems table to this CSV.")


def main(argv):
    del argv
    df = manifest.read_manifest(FLAGS.manifest)
    if df["split"].notna().any():
        splits.check_patient_disjoint(df)
    res = manifest.load_records(df, on_error="skip", options=ReadOptions(
        min_seconds=FLAGS.min_seconds))
    print(f"{len(res.manifest)} of {len(df)} records OK, {len(res.problems)} with problems")
    if len(res.problems):
        print(res.problems.to_string(index=False))
    if FLAGS.report:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.report)), exist_ok=True)
        res.problems.to_csv(FLAGS.report, index=False)
    return 1 if len(res.problems) else 0
