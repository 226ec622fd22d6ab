"""Export a trained classifier to SavedModel + 4 TFLite variants, check parity, write a card.

Example: ecg-moco export --model=runs/demo/proposed/classifier.keras \
             --manifest=runs/demo/manifest_with_splits.csv --out=saved_models/lvsd_demo
Parity is measured on --heldout_split ECGs; int8 is calibrated on --calibration_split ECGs.
A format that differs from the Keras model beyond its tolerance is left out with a warning
(kept: false in the card); only a SavedModel beyond its tolerance fails the export (exit 1,
after writing the card). Decision flips are counted at the model's decision threshold
(--threshold, else the one stored at fine-tuning, else 0.5).
An unreadable record stops the export (--on_error=raise) or is left out, listed in
<out>/problems.csv and the card (--on_error=skip).
"""
import os

from absl import flags

from ecg_moco_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Trained classifier (.keras).", required=True)
flags.DEFINE_string("manifest", None, "Manifest with splits (held-out and calibration ECGs).",
                    required=True)
flags.DEFINE_string("out", "saved_models/model", "Output folder (created).")
flags.DEFINE_string("heldout_split", "test", "Split used for the parity check and the card.")
flags.DEFINE_string("calibration_split", "train2", "Split whose ECGs calibrate full int8.")
flags.DEFINE_integer("max_ecgs", 0, "Held-out ECGs for parity and the card's metrics: 0 = all "
                     "of --heldout_split, else a seeded random sample of this many.")
flags.DEFINE_integer("max_calibration_ecgs", 200, "int8 calibration: a seeded random sample of "
                     "this many --calibration_split ECGs.")
flags.DEFINE_integer("seed", 0, "Seed of the samples above.")
flags.DEFINE_list("formats", ["savedmodel", "float32", "float16", "dynamic_int8", "int8"],
                  "Formats to write.")
flags.DEFINE_float("tol_float16", 0.02, "Max |probability difference| for float16.")
flags.DEFINE_float("tol_dynamic_int8", 0.1, "Max |probability difference| for dynamic int8.")
flags.DEFINE_float("tol_int8", 0.2, "Max |probability difference| for full int8.")
common.define_read_flags(__name__, on_error="raise")
flags.DEFINE_string("task_name", None, "What the classifier detects (model card, outputs); "
                    "default: the task in provenance.json beside --model, else 'positive'.")
flags.DEFINE_float("threshold", None, "Decision threshold stated in the model card (and used "
                   "by `ecg-moco predict`), with the held-out sensitivity / specificity at it; "
                   "in [0, 1]; default: the valid2 threshold fine-tuning stored beside --model "
                   "(provenance.json), else 0.5.", lower_bound=0.0, upper_bound=1.0)


def main(argv):
    del argv
    import pandas as pd

    from ecg_moco_tf.data import read_manifest
    from ecg_moco_tf.export import ParityError, export_from_manifest

    if os.path.exists(FLAGS.out) and not os.path.isdir(FLAGS.out):
        raise SystemExit(f"--out={FLAGS.out} is a file; --out takes a folder for the exported "
                         "models, e.g. --out=saved_models/mine")
    tol = {"float16": FLAGS.tol_float16, "dynamic_int8": FLAGS.tol_dynamic_int8,
           "int8": FLAGS.tol_int8}
    try:
        card = export_from_manifest(FLAGS.model, read_manifest(FLAGS.manifest), FLAGS.out,
                                    FLAGS.heldout_split, FLAGS.calibration_split,
                                    FLAGS.max_ecgs, FLAGS.max_calibration_ecgs, FLAGS.seed,
                                    FLAGS.formats, tol, on_error=FLAGS.on_error,
                                    options=common.read_options_from_flags(),
                                    task_name=FLAGS.task_name, threshold=FLAGS.threshold)
    except ParityError as e:
        print(e)
        return 1
    print(f"{'format':13s} {'kB':>9s}  {'max|diff|':>9s} {'mean|diff|':>10s} {'flipped':>7s}  "
          "kept")
    for kind, r in card["parity"]["formats"].items():
        print(f"{kind:13s} {r['bytes'] / 1e3:9.1f}  {r['max_abs_diff']:9.2e} "
              f"{r.get('mean_abs_diff', float('nan')):10.2e} {r.get('decision_flips', 0):7d}  "
              f"{'yes' if r.get('kept', True) else 'no: left out (warning above)'}")
    skipped = pd.DataFrame(card["skipped_records"], columns=["record", "problem"])
    common.write_problems(skipped, FLAGS.out)
    m = card.get("heldout_metrics")
    if m:
        print(f"held-out AUC (SavedModel) {m['auc']:.4f} [{m['auc_ci_low']:.4f}, "
              f"{m['auc_ci_high']:.4f}] on {card['heldout_ecgs']}")
    print(f"wrote {FLAGS.out} (model_card.json, MODEL_CARD.md)")
    return 0
