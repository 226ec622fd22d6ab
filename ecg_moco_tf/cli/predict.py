"""Score ECGs with a trained model (.keras, SavedModel folder or .tflite).

Example: ecg-moco predict --model=saved_models/demo/savedmodel --input=my_ecgs/ \
             --out=predictions.csv
--input: one record, a folder of records (WFDB, .npz, HDF5) or a manifest. The model must end
in one probability per ECG (a classifier, not an encoder). Output: one row per scored record,
p_<task> (the probability; the task comes from the model's card or --task_name), decision
(at --threshold, default the model's stored threshold; the console says which) and warning
(what `ecg-moco validate` warns about, e.g. swapped limb leads; such ECGs are still scored).
A manifest needs only a 'record' column; its patient_id, label, split and other columns are
copied to the output (one named like an output column as manifest_<name>); --split scores
only that split's rows (default: every row). An unreadable record stops the command (--on_error=raise, exit status 2, nothing written) or is
left out of --out and listed with the reason in problems.csv beside it (--on_error=skip, exit
status 1). Exit status: 0 all scored, 1 some records skipped, 2 bad usage.
"""
import os

from absl import flags

from ecg_moco_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Model: .keras, SavedModel folder or .tflite.", required=True)
flags.DEFINE_string("input", None, "Record file, folder or manifest.", required=True)
flags.DEFINE_alias("manifest", "input")                    # other commands' name for a manifest
flags.DEFINE_alias("records", "input")                     # explain's earlier name
flags.DEFINE_string("out", "predictions.csv", "Output CSV (its folder is created).")
flags.DEFINE_float("threshold", None, "Decision threshold on the probability, in [0, 1]; "
                   "default: the one stored with --model (its model card's, or the valid2 "
                   "threshold fine-tuning chose), else 0.5.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
common.define_read_flags(__name__, on_error="raise")
flags.DEFINE_string("task_name", None, "Names the probability column p_<task>; default: the "
                    "task recorded with --model (model_card.json / provenance.json), else "
                    "'positive'.")
flags.DEFINE_string("split", None, "With a manifest as --input: score only the rows of this "
                    "split (e.g. test); default: every row.")


def main(argv):
    del argv
    from ecg_moco_tf.data.manifest import UnreadableRecords
    from ecg_moco_tf.predict import predict_records
    from ecg_moco_tf.provenance import prob_column, stored_threshold, task_of

    if os.path.abspath(FLAGS.out) == os.path.abspath(FLAGS.input):
        raise SystemExit(f"--out={FLAGS.out} is the --input manifest: write the predictions "
                         "to another file (the manifest would be replaced)")
    out = common.output_file(FLAGS.out)
    task = task_of(FLAGS.model, FLAGS.task_name)
    threshold, source = ((FLAGS.threshold, "--threshold") if FLAGS.threshold is not None
                         else stored_threshold(FLAGS.model))
    print(f"decision threshold {threshold:.4g} ({source})")
    df = predict_records(FLAGS.model, FLAGS.input, threshold, FLAGS.batch_size,
                         common.read_options_from_flags(), split=FLAGS.split,
                         column=prob_column(task))
    bad = df["error"] != ""
    problems = df.loc[bad, ["record", "error"]].rename(columns={"error": "problem"})
    if len(problems) and FLAGS.on_error == "raise":
        raise UnreadableRecords(problems, len(df))
    df[~bad].drop(columns="error").to_csv(out, index=False)
    which = f"split {FLAGS.split}" if FLAGS.split else "all rows"
    print(f"scored {int((~bad).sum())} of {len(df)} records ({which}) -> {out}")
    warned = df[~bad & (df["warning"] != "")]
    if len(warned):
        first = warned.iloc[0]
        print(f"warning: {len(warned)} scored record(s) look wrong (column 'warning' of {out}; "
              f"`ecg-moco validate` checks a manifest before scoring), e.g. {first['record']}: "
              f"{first['warning']}")
    common.write_problems(problems, os.path.dirname(os.path.abspath(out)), len(df))
    return 1 if len(problems) else 0
