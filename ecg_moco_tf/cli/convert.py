"""Convert a manifest's records to sharded TFRecord files for streaming large data sets.

Example: ecg-moco convert --manifest=runs/cohort/manifest.csv --out=runs/cohort/tfrecords
Writes <split>-NNNNN-of-MMMMM.tfrecord (int16 microvolts, 12 x 5000) and problems.csv.
"""
import os

from absl import flags

from ecg_moco_tf.cli import common
from ecg_moco_tf.data import manifest
from ecg_moco_tf.data.pipeline import write_tfrecords

FLAGS = flags.FLAGS
flags.DEFINE_string("manifest", None, "Manifest (CSV or Parquet).", required=True)
flags.DEFINE_string("out", None, "Output folder for the shards.", required=True)
flags.DEFINE_integer("shard_size", 1024, "ECGs per shard (about 120 kB each).")
common.define_read_flags(__name__, on_error="raise")


def main(argv):
    del argv
    df = manifest.read_manifest(FLAGS.manifest)
    written, problems = write_tfrecords(df, FLAGS.out, FLAGS.shard_size,
                                        common.read_options_from_flags(),
                                        on_error=FLAGS.on_error)
    problems.to_csv(os.path.join(FLAGS.out, "problems.csv"), index=False)
    print(f"wrote {sum(written.values())} ECGs ({written}) to {FLAGS.out}; "
          f"{len(problems)} skipped, listed in problems.csv")
    if len(problems):
        print(problems.to_string(index=False))
