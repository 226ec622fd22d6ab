"""Build a manifest from a PTB-XL folder; splits from the official strat_fold.

Example: ecg-moco ptbxl --ptbxl_root=../shared/data/ptbxl-subset --ptbxl_label=MI \
             --out=runs/ptbxl.csv
Folds in --ptbxl_pretrain_folds become train1/valid1, fold 9 valid2, fold 10 test, the rest
train2. --ptbxl_pool=DIR appends another PTB-XL folder (e.g. ../shared/data/ptbxl-pool) as
unlabelled pretraining ECGs (train1/valid1 by patient; pool ECGs of patients in
train2/valid2/test and of strat_fold 9 and 10 dropped, --ptbxl_pool_exclude_folds).
The flags are named as in `reproduce`; the earlier --root, --label, --pretrain_folds and --pool
still work.
"""
from absl import flags

from ecg_moco_tf.data import manifest, ptbxl, splits

FLAGS = flags.FLAGS
flags.DEFINE_string("ptbxl_root", None, "PTB-XL folder (ptbxl_database*.csv, records500/).",
                    required=True)
flags.DEFINE_string("ptbxl_label", "MI", "Superclass (NORM, MI, STTC, CD, HYP) or SCP code to "
                    "predict.")
flags.DEFINE_string("out", "runs/ptbxl_manifest.csv", "Output manifest path.")
flags.DEFINE_list("ptbxl_pretrain_folds", [str(f) for f in ptbxl.PRETRAIN_FOLDS],
                  "strat_fold values used for pretraining (train1/valid1; as in reproduce); "
                  "empty (--ptbxl_pretrain_folds=): none, folds 1-8 all train2.")
flags.DEFINE_string("ptbxl_pool", None, "PTB-XL folder (ptbxl_database*.csv or labels.csv) "
                    "added as unlabelled pretraining ECGs, keeping each patient on one side.")
flags.DEFINE_list("ptbxl_pool_exclude_folds", [str(f) for f in ptbxl.HELD_OUT_FOLDS],
                  "Pool ECGs of these strat_folds are dropped (PTB-XL's validation and test "
                  "folds by default: an encoder pretrained on the pool is then evaluated on "
                  "them without having seen them).")
flags.DEFINE_integer("seed", 0, "Seed of the pool's train1/valid1 split.")
for _old in ("root", "label", "pretrain_folds", "pool"):         # the earlier names
    flags.DEFINE_alias(_old, "ptbxl_" + _old)


def main(argv):
    del argv
    df = ptbxl.ptbxl_manifest(FLAGS.ptbxl_root, label=FLAGS.ptbxl_label)
    df = ptbxl.folds_to_splits(df, pretrain_folds=[int(f) for f in FLAGS.ptbxl_pretrain_folds])
    if FLAGS.ptbxl_pool:
        df = ptbxl.add_pretraining_pool(
            df, ptbxl.ptbxl_manifest(FLAGS.ptbxl_pool, label=None), seed=FLAGS.seed,
            exclude_folds=[int(f) for f in FLAGS.ptbxl_pool_exclude_folds])
    splits.check_patient_disjoint(df)
    out = manifest.write_manifest(df, FLAGS.out)       # record paths made relative to --out
    print(splits.split_summary(df).to_string())
    print(f"wrote {out}")
