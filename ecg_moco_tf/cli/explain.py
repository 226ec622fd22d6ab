"""Grad-CAM / Grad-CAM++ / Score-CAM / LayerCAM of a classifier or an encoder on a set of ECGs.

Example: ecg-moco explain --model=runs/demo/proposed/classifier.keras \\
             --input=runs/demo/manifest_with_splits.csv --split=test --out=runs/explain
Writes per method: 12-lead figures (4x3 + rhythm strip and 12 rows, PNG + SVG) of the most
confident ECGs per group, the lead x wave attribution table and heat map (positives vs
negatives), maps.npz, per-ECG scores, and, where the manifest has a ground-truth ``mask`` column
(synthetic cohort), faithfulness: energy in mask, pointing game, deletion curve vs random maps.
--input (as in predict; --records, --manifest: the same): a manifest, a folder of records or
one record. An encoder (paper Figure 2) is explained by cosine similarity to class prototypes:
it needs labels (in --input or in --reference). Exit status: 0 all explained, 1 some records
left out (see problems.csv), 2 bad usage.
"""
from absl import flags

from ecg_moco_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Keras model (.keras): a classifier or an encoder.",
                    required=True)
flags.DEFINE_string("input", None, "Manifest (.csv/.parquet), folder of records or a record.",
                    required=True)
flags.DEFINE_alias("records", "input")                     # the earlier name
flags.DEFINE_alias("manifest", "input")
flags.DEFINE_string("out", "explain", "Output folder.")
flags.DEFINE_list("methods", ["gradcam"], "Any of gradcam, gradcam++, scorecam, layercam "
                  "(which to trust: see explain/gradcam.py and the faithfulness scores).")
flags.DEFINE_string("layer", None, "Target layer name (default: the last temporal block, "
                    "temporal_6_relu for the default encoder: the deepest layer with one row per "
                    "lead).")
flags.DEFINE_enum("target", "auto", ["auto", "label", "predicted", "positive", "negative"],
                  "Class explained per ECG; auto = label if all labelled, else predicted.")
flags.DEFINE_string("split", None, "Only the rows of this split (manifests).")
flags.DEFINE_integer("max_records", 0, "Explain at most this many records (seeded sample; "
                     "0 = all).")
flags.DEFINE_string("reference", None, "Labelled manifest for the class prototypes (encoder); "
                    "default --input.")
flags.DEFINE_integer("plots", 2, "12-lead figures per group (most confident first).")
flags.DEFINE_list("layouts", ["4x3", "12"], "Figure layouts: 4x3 and/or 12.")
flags.DEFINE_list("formats", ["png", "svg"], "Figure formats.")
flags.DEFINE_integer("n_random", 20, "Random maps for the faithfulness baselines.")
flags.DEFINE_integer("scorecam_max_n", 0, "Score-CAM: channels used (0 = all).")
flags.DEFINE_integer("seed", 0, "Seed (record sample, random maps, tie breaks).")
common.define_read_flags(__name__)
flags.DEFINE_string("task_name", None, "What the classifier detects (column p_<task>, figure "
                    "titles); default: the task recorded with --model, else 'positive'.")


def load_keras_model(path):
    """Load a .keras model; a clear error for exported formats (no gradients there)."""
    import os

    if not str(path).endswith(".keras") or not os.path.isfile(path):
        raise FileNotFoundError(
            f"--model={path}: Grad-CAM needs the Keras model file (.keras), e.g. "
            "runs/demo/proposed/classifier.keras or runs/demo/pretrain/encoder.keras; "
            "SavedModel folders and .tflite files have no layer graph to explain")
    from ecg_moco_tf.models import load_model

    return load_model(path)


def main(argv):
    del argv
    from ecg_moco_tf.explain.cohort import explain_cohort
    from ecg_moco_tf.predict import record_table

    from ecg_moco_tf.provenance import task_of

    task = task_of(FLAGS.model, FLAGS.task_name)
    model = load_keras_model(FLAGS.model)
    df = record_table(FLAGS.input)
    if FLAGS.split:
        root = df.attrs.get("root")
        df = df[df["split"] == FLAGS.split].reset_index(drop=True)
        df.attrs["root"] = root
        if not len(df):
            raise ValueError(f"no rows with split == {FLAGS.split!r} in {FLAGS.input}")
    if FLAGS.max_records and len(df) > FLAGS.max_records:
        root = df.attrs.get("root")
        df = df.sample(FLAGS.max_records, random_state=FLAGS.seed).sort_index()
        df = df.reset_index(drop=True)
        df.attrs["root"] = root
    reference = record_table(FLAGS.reference) if FLAGS.reference else None
    res = explain_cohort(model, df, FLAGS.out, methods=FLAGS.methods, layer=FLAGS.layer,
                         target=FLAGS.target, reference=reference, n_plots=FLAGS.plots,
                         layouts=tuple(FLAGS.layouts), formats=tuple(FLAGS.formats),
                         seed=FLAGS.seed, n_random=FLAGS.n_random,
                         max_n=FLAGS.scorecam_max_n or None, task_name=task,
                         options=common.read_options_from_flags())
    print(f"explained {res['explained']} of {res['records']} ECGs -> {FLAGS.out}/summary.md")
    for method, r in res["methods"].items():
        f = r.get("faithfulness")
        if f:
            print(f"{method}: energy in mask {f['energy_in_mask']:.3f} (random "
                  f"{f['energy_in_mask_random']:.3f}), pointing game {f['pointing_game']:.3f} "
                  f"(random {f['pointing_game_random']:.3f}), deletion AUC "
                  f"{f['deletion_area']:.3f} (random {f['deletion_area_random']:.3f})")
    if res["left_out"]:
        print(f"{res['left_out']} record(s) or attribution(s) left out: "
              f"{FLAGS.out}/problems.csv")
        return 1
    return 0
