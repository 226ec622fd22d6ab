"""Compare a (synthetic) cohort with real ECGs: per-lead voltages, intervals, beat-to-beat
correlation, noise, baseline wander, T-wave asymmetry; a table, a figure, a real-vs-synthetic
discriminator AUC, and one JSON object last.

Example (real non-MI PTB-XL ECGs vs the synthetic cohort's negatives):
  ecg-moco ptbxl --ptbxl_root=../shared/data/ptbxl-subset --ptbxl_label=MI --out=/tmp/ptbxl.csv
  ecg-moco synth --out=/tmp/synth
  ecg-moco realism --real=/tmp/ptbxl.csv --synthetic=/tmp/synth/manifest.csv --label=0
Records that cannot be read or delineated are listed and left out; fewer than 50 usable
records on a side is an error (exit 2). benchmarks/bench_realism.py runs this on PTB-XL.
"""
import os

from absl import flags

from ecg_moco_tf.data import manifest
from ecg_moco_tf.evaluation import realism

FLAGS = flags.FLAGS
flags.DEFINE_string("real", None, "Manifest of the real ECGs.", required=True)
flags.DEFINE_string("synthetic", None, "Manifest of the ECGs to compare with them.",
                    required=True)
flags.DEFINE_string("label", "", "Keep only rows with this label (0 or 1) on both sides; "
                    "empty: all rows.")
flags.DEFINE_integer("max_records", 300, "At most this many ECGs per side (one per patient, "
                     "chosen with --seed).")
flags.DEFINE_integer("seed", 0, "Seed of the record sample and of the discriminator.")
flags.DEFINE_string("out", "realism", "Folder for realism.png, realism_table.csv, "
                    "left_out.csv and realism.json.")
flags.DEFINE_bool("discriminator", True, "Train the encoder + linear head to tell real from "
                  "synthetic and report its test AUC (a few minutes on CPU).")
flags.DEFINE_integer("discriminator_epochs", 8, "Discriminator training epochs (early "
                     "stopping on validation loss, patience 3).")


def main(argv):
    del argv
    sides = []
    for flag in ("real", "synthetic"):
        df = manifest.read_manifest(getattr(FLAGS, flag))
        if FLAGS.label != "":
            if FLAGS.label not in ("0", "1"):
                raise SystemExit(f"--label={FLAGS.label}: give 0, 1 or leave it empty")
            root = df.attrs["root"]
            df = df[(df["label"] == int(FLAGS.label)).fillna(False).astype(bool)]
            df.attrs["root"] = root
        sides.append(df)
    os.makedirs(FLAGS.out, exist_ok=True)
    result = realism.compare_manifests(
        *sides, max_records=FLAGS.max_records, seed=FLAGS.seed,
        figure=os.path.join(FLAGS.out, "realism.png"), discriminator=FLAGS.discriminator,
        discriminator_kwargs={"epochs": FLAGS.discriminator_epochs})
    realism.save(result, FLAGS.out)
    realism.report(result)
