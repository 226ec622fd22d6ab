"""Build a manifest from a folder of records (WFDB .hea/.dat or .hea/.mat, .npz, HDF5).

Example: ecg-moco manifest --root=/data/ecgs --labels=/data/labels.csv --id_column=record \
             --label_column=MI --patient_column=patient_id --out=/data/manifest.csv
patient_id: --patient_column (a column of --labels), --patient_regex (on the record name; its
first group), or one patient per record (the default; the output says which was used).
Labels and the CSV's other columns are joined on --id_column (record path relative to --root,
or file name); its split, fs and leads columns too. An existing --out is replaced only with
--overwrite. Next: `ecg-moco validate --manifest=...`, then `ecg-moco split`.
"""
import os

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("root", None, "Folder of records (searched recursively).", required=True)
flags.DEFINE_string("out", "manifest.csv", "Output manifest (.csv or .parquet); record paths "
                    "are written relative to its folder.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --out.")
flags.DEFINE_string("labels", None, "CSV with one row per record to join (labels, patient ids, "
                    "other columns).")
flags.DEFINE_string("id_column", "record", "Column of --labels that names the record.")
flags.DEFINE_string("label_column", None, "Column of --labels with the 0/1 (or True/False) "
                    "label; empty = unlabelled.")
flags.DEFINE_string("patient_column", None, "Column of --labels with the patient id.")
flags.DEFINE_string("patient_regex", None, "Regular expression on the record name whose first "
                    "group (or match) is the patient id, e.g. '^(\\d+)_'.")


def main(argv):
    del argv
    from ecg_moco_tf.data.folder import manifest_from_folder
    from ecg_moco_tf.data.manifest import write_manifest

    if os.path.exists(FLAGS.out) and not FLAGS.overwrite:
        raise SystemExit(f"--out={FLAGS.out} exists: choose another file, or pass --overwrite "
                         "to replace it")
    df, notes = manifest_from_folder(FLAGS.root, FLAGS.patient_regex, FLAGS.labels,
                                     FLAGS.id_column, FLAGS.label_column, FLAGS.patient_column)
    path = write_manifest(df, FLAGS.out)
    print("\n".join(notes))
    print(f"wrote {path}; next: ecg-moco validate --manifest={path}")
