"""Write a synthetic cohort: records/ (WFDB), masks/ (ground truth), manifest.csv, splits.

Example: ecg-moco synth --out=data/synth --num_patients=400 --seed=0
Paper scale (about 37,000 ECGs): --num_patients=18919
"""
import os
import time

from absl import flags

from ecg_moco_tf.data import manifest, splits, synthetic
from ecg_moco_tf.data.synthetic import CohortConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "data/synth", "Output folder (created).")
flags.DEFINE_integer("num_patients", CohortConfig.num_patients, "Number of patients (about "
                     "1.96 ECGs each).")
flags.DEFINE_float("prevalence", CohortConfig.prevalence, "Share of patients with the LVSD-like "
                   "phenotype.")
flags.DEFINE_float("phenotype_scale", CohortConfig.phenotype_scale, "Synthetic cohort: "
                   "strength of the LVSD-like phenotype (the default is calibrated to "
                   "full-label AUC ~0.9, docs/data.md).")
flags.DEFINE_integer("seed", 0, "Seed for the cohort and its splits.")
flags.DEFINE_float("mains_hz", CohortConfig.mains_hz, "Mains frequency of the powerline noise "
                   "(50 or 60).")
flags.DEFINE_bool("assign_splits", True, "Fill the 'split' column with the paper's proportions.")


def main(argv):
    del argv
    cfg = synthetic.CohortConfig(num_patients=FLAGS.num_patients, prevalence=FLAGS.prevalence,
                                 phenotype_scale=FLAGS.phenotype_scale, seed=FLAGS.seed,
                                 mains_hz=FLAGS.mains_hz)
    t0 = time.time()
    df = synthetic.write_cohort(FLAGS.out, cfg)
    if FLAGS.assign_splits:
        df = splits.assign_splits(df, seed=FLAGS.seed)
    path = manifest.write_manifest(df, os.path.join(FLAGS.out, "manifest.csv"))
    print(f"wrote {len(df)} ECGs of {df['patient_id'].nunique()} patients to {FLAGS.out} "
          f"in {time.time() - t0:.1f} s; manifest: {path}")
    if FLAGS.assign_splits:
        print(splits.split_summary(df).to_string())
