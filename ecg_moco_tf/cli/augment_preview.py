"""Draw one ECG lead under each augmentation (like the paper's Figure 1) to a PNG.

Example: ecg-moco augment-preview --record=runs/cohort/records/P000000_1 --out=aug.png
Without --record, the first ECG of a small synthetic cohort is used.
"""
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("record", None, "Record to show (any supported format); default synthetic.")
flags.DEFINE_string("lead", "II", "Lead to draw.")
flags.DEFINE_string("out", "augment_preview.png", "PNG path.")
flags.DEFINE_float("seconds", 4.0, "Seconds of signal to draw.")
flags.DEFINE_integer("seed", 0, "Seed of the random draws.")
flags.DEFINE_bool("extras", True, "Also show lead masking, powerline and muscle noise.")


def main(argv):
    del argv
    from ecg_moco_tf.explain.augplot import plot_augmentations

    if FLAGS.record:
        from ecg_moco_tf.data.records import read_record

        x = read_record(FLAGS.record)
    else:
        from ecg_moco_tf.data import synthetic

        x = synthetic.generate(synthetic.CohortConfig(num_patients=1, seed=FLAGS.seed))[0][0]
    from ecg_moco_tf.cli.common import output_file

    path = plot_augmentations(x, output_file(FLAGS.out), lead=FLAGS.lead, seconds=FLAGS.seconds,
                              seed=FLAGS.seed, extras=FLAGS.extras)
    print(f"wrote {path}")
