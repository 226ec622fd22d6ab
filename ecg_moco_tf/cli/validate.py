"""Read every record of a manifest: problems, warnings, and what reading will do to each.

Example: ecg-moco validate --manifest=data/synth/manifest.csv --report=validate.csv
Problems (unreadable, flat or too short records, unknown leads, ...) make the exit status 1.
Warnings do not: a lead above --max_p2p_mv peak-to-peak (usually a wrong header gain or
units), a sampling rate below --min_fs. The console counts the records that will be resampled,
cropped, zero-padded or lose extra leads; --report writes one row per record (record, status,
fs, seconds, actions, message). An empty manifest is an error (exit status 2).
"""
from absl import flags

from ecg_moco_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("manifest", None, "Manifest (CSV or Parquet) to check.", required=True)
flags.DEFINE_string("report", None, "Also write one row per record to this CSV.")
flags.DEFINE_float("max_p2p_mv", 10.0, "Warn about leads above this peak-to-peak amplitude, mV.")
flags.DEFINE_float("min_fs", 250.0, "Warn about records sampled below this rate, Hz.")
common.define_read_flags(__name__)


def main(argv):
    del argv
    from ecg_moco_tf.data import manifest, splits

    df = manifest.read_manifest(FLAGS.manifest)
    if df["split"].notna().any():
        splits.check_patient_disjoint(df)
    out = common.output_file(FLAGS.report, "report", "validation.csv") if FLAGS.report else None
    res = manifest.check_records(df, common.read_options_from_flags(), FLAGS.max_p2p_mv,
                                 FLAGS.min_fs)
    res["message"] = res["message"].map(common.read_flag_spelling)
    n = res["status"].value_counts()
    print(f"{n.get('ok', 0) + n.get('warning', 0)} of {len(df)} records OK, "
          f"{n.get('warning', 0)} with warnings, {n.get('error', 0)} with problems")
    acts = res["actions"].str.split("; ").explode()
    done = acts[acts != ""].str.split(" ").str[0].value_counts()
    verb = {"drop": "drop extra leads of"}
    if len(done):
        print("reading will " + ", ".join(f"{verb.get(w, w)} {k} record(s)"
                                          for w, k in done.items())
              + (f" (per record: {FLAGS.report})" if out else " (per record: --report)"))
    flagged = res[res["status"] != "ok"]
    if len(flagged):
        print(flagged[["record", "status", "message"]].to_string(index=False))
    if out:
        res.to_csv(out, index=False)
    return 1 if n.get("error", 0) else 0
