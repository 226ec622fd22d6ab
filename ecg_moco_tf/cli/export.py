"""Export a trained classifier to SavedModel + 4 TFLite variants, check parity, write a card.

Example: ecg-moco export --model=runs/demo/proposed/classifier.keras \
             --manifest=runs/demo/manifest_with_splits.csv --out=saved_models/lvsd_demo
Parity is measured on --heldout_split ECGs; int8 is calibrated on --calibration_split ECGs.
The export fails (exit 1) when a format differs from the Keras model beyond its tolerance.
"""
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Trained classifier (.keras).", required=True)
flags.DEFINE_string("manifest", None, "Manifest with splits (held-out and calibration ECGs).",
                    required=True)
flags.DEFINE_string("out", "saved_models/model", "Output folder.")
flags.DEFINE_string("heldout_split", "test", "Split used for the parity check and the card.")
flags.DEFINE_string("calibration_split", "train2", "Split whose ECGs calibrate full int8.")
flags.DEFINE_integer("max_ecgs", 200, "At most this many ECGs per split (first rows).")
flags.DEFINE_list("formats", ["savedmodel", "float32", "float16", "dynamic_int8", "int8"],
                  "Formats to write.")
flags.DEFINE_float("tol_float16", 0.02, "Max |probability difference| for float16.")
flags.DEFINE_float("tol_dynamic_int8", 0.1, "Max |probability difference| for dynamic int8.")
flags.DEFINE_float("tol_int8", 0.2, "Max |probability difference| for full int8.")


def main(argv):
    del argv
    import keras

    from ecg_moco_tf.data import load_records, read_manifest, split_summary
    from ecg_moco_tf.evaluation import evaluate
    from ecg_moco_tf.export import ParityError, export_all

    df = read_manifest(FLAGS.manifest)
    held = load_records(df[df["split"] == FLAGS.heldout_split].head(FLAGS.max_ecgs))
    cal = load_records(df[df["split"] == FLAGS.calibration_split].head(FLAGS.max_ecgs))
    model = keras.saving.load_model(FLAGS.model)
    y = held.manifest["label"].astype(int).to_numpy()
    p = model.predict(held.signals, verbose=0).ravel()
    m = evaluate(y, p, held.manifest["patient_id"])
    extra = {"source_model": FLAGS.model,
             "training_data": split_summary(df).reset_index().to_dict(orient="records"),
             "heldout_metrics": {k: m[k] for k in ("n_ecgs", "n_patients", "n_positive", "auc",
                                                   "auc_ci_low", "auc_ci_high", "brier")}}
    tol = {"float16": FLAGS.tol_float16, "dynamic_int8": FLAGS.tol_dynamic_int8,
           "int8": FLAGS.tol_int8}
    try:
        card = export_all(model, FLAGS.out, held.signals, y, cal.signals, FLAGS.formats, tol,
                          extra)
    except ParityError as e:
        print(e)
        return 1
    for kind, r in card["parity"]["formats"].items():
        print(f"{kind:13s} {r['bytes'] / 1e3:9.1f} kB  max|diff| {r['max_abs_diff']:.2e}  "
              f"AUC change {r.get('auc_change', float('nan')):+.4f}")
    print(f"wrote {FLAGS.out} (model_card.json)")
    return 0
