"""Score ECGs with a trained model (.keras, SavedModel folder or .tflite).

Example: ecg-moco predict --model=saved_models/demo/model_int8.tflite --input=my_ecgs/ \
             --out=predictions.csv --threshold=0.5
--input: one record, a folder of records (WFDB, .npz, HDF5) or a manifest. Every record gets a
row: p_<task> (the probability; the task comes from the model's card or --task_name), decision,
or the reason it could not be read in 'error'. A manifest needs only a 'record' column; its
patient_id, label, split and other columns are copied to the output; --split scores only that
split's rows (default: every row). Exit status: 0 all scored, 1 some records
could not be read (the others are scored), 2 bad usage.
"""
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Model: .keras, SavedModel folder or .tflite.", required=True)
flags.DEFINE_string("input", None, "Record file, folder or manifest.", required=True)
flags.DEFINE_string("out", "predictions.csv", "Output CSV.")
flags.DEFINE_float("threshold", 0.5, "Decision threshold on the probability.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("min_seconds", 5.0, "Shortest accepted record, seconds.")
flags.DEFINE_string("task_name", None, "Names the probability column p_<task>; default: the "
                    "task recorded with --model (model_card.json / provenance.json), else "
                    "'positive'.")
flags.DEFINE_string("split", None, "With a manifest as --input: score only the rows of this "
                    "split (e.g. test); default: every row.")


def main(argv):
    del argv
    from ecg_moco_tf.data.records import ReadOptions
    from ecg_moco_tf.predict import predict_records
    from ecg_moco_tf.provenance import prob_column, task_of

    try:
        task = task_of(FLAGS.model, FLAGS.task_name)
        df = predict_records(FLAGS.model, FLAGS.input, FLAGS.threshold, FLAGS.batch_size,
                             ReadOptions(min_seconds=FLAGS.min_seconds), split=FLAGS.split,
                             column=prob_column(task))
    except ValueError as e:
        raise SystemExit(str(e)) from None
    df.to_csv(FLAGS.out, index=False)
    bad = df[df["error"] != ""]
    which = f"split {FLAGS.split}" if FLAGS.split else "all rows"
    print(f"scored {len(df) - len(bad)} of {len(df)} records ({which}) -> {FLAGS.out}")
    if len(bad):
        print(f"{len(bad)} record(s) could not be read:")
        print(bad[["record", "error"]].to_string(index=False))
        return 1
    return 0
