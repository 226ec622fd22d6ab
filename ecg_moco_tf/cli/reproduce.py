"""The main job: data -> splits -> MoCo pretraining -> the paper's three experiments ->
Table 2 with 95 % CIs and DeLong p-values, a Markdown report and figures.

Data: the built-in synthetic cohort (default), --manifest (any manifest; splits are assigned
if its 'split' column is empty), or --ptbxl_root with --ptbxl_label (official strat_fold:
--ptbxl_pretrain_folds pretrain, fold 9 valid2, fold 10 test, the rest train2). Cross-fold
testing (--cv_folds=10): every fold the test split once (flags/ptbxl_mi_crossfold.flags).
Examples:
  ecg-moco reproduce --flagfile=flags/demo.flags                      # what `make demo` runs
  ecg-moco reproduce --flagfile=flags/reproduce_paper_scale.flags     # 37,103 synthetic ECGs
  ecg-moco reproduce --ptbxl_root=../shared/data/ptbxl-subset --ptbxl_label=MI --out=runs/ptbxl
  ecg-moco reproduce --flagfile=flags/ptbxl_mi.flags     # + ptbxl-pool as unlabelled pretraining
An unfinished pretraining in <out>/pretrain is resumed; a finished one, or an <out> holding a
finished run's results, is refused (exit code 2) unless --overwrite (then it is run again).
Several GPUs or machines: --strategy=mirrored|multi_worker, --mixed_precision, --jit_compile,
--sync_bn (docs/distributed.md); --batch_size and --pretrain_batch_size are global.
Settings: every flag of `finetune`'s training and of `pretrain` under the same name, except
pretraining's optimizer flags, prefixed pretrain_ (--pretrain_epochs, --pretrain_batch_size,
--pretrain_learning_rate, --pretrain_warmup_steps, --pretrain_lr_schedule). --verbose: Keras'
progress bar within each epoch (default: one line per epoch).
"""
import dataclasses
import json
import os
import re
import sys

import numpy as np
import pandas as pd

from absl import flags

from ecg_moco_tf.cli import common
from ecg_moco_tf.data.ptbxl import PRETRAIN_FOLDS
from ecg_moco_tf.data.synthetic import CohortConfig

FLAGS = flags.FLAGS
common.define_encoder_flags(__name__)
common.define_distribute_flags(__name__)
flags.DEFINE_string("out", "runs/reproduce", "Output folder (report.md, results.json, ...).")
flags.DEFINE_bool("overwrite", False, "Replace a finished run in <out>: its results and "
                  "report, and pretrain again over a finished <out>/pretrain (default: refuse "
                  "it; an unfinished pretraining is resumed).")
flags.DEFINE_string("manifest", None, "Use this manifest instead of the synthetic cohort.")
flags.DEFINE_string("ptbxl_root", None, "Use a PTB-XL folder instead of the synthetic cohort.")
flags.DEFINE_string("ptbxl_label", "MI", "PTB-XL superclass or SCP code to predict.")
flags.DEFINE_string("task_name", "positive", "What the classifier detects, e.g. MI or LVSD: the "
                    "probability column p_<task> of the CSVs, figure titles, the model card.")
flags.DEFINE_list("ptbxl_pretrain_folds", [str(f) for f in PRETRAIN_FOLDS],
                  "PTB-XL strat_folds used for pretraining (train1/valid1).")
flags.DEFINE_string("ptbxl_pool", None, "With --ptbxl_root: another PTB-XL folder (e.g. "
                    "../shared/data/ptbxl-pool) added as unlabelled pretraining ECGs; pool ECGs "
                    "of patients in train2/valid2/test are dropped.")
flags.DEFINE_list("ptbxl_pool_exclude_folds", ["9", "10"], "Pool ECGs of these strat_folds "
                  "are dropped (PTB-XL's validation and test folds by default).")
flags.register_multi_flags_validator(
    ["ptbxl_pool", "ptbxl_root"], lambda f: not f["ptbxl_pool"] or bool(f["ptbxl_root"]),
    message="--ptbxl_pool needs --ptbxl_root (the labelled PTB-XL folder)")
flags.register_multi_flags_validator(
    ["manifest", "ptbxl_root"], lambda f: not (f["manifest"] and f["ptbxl_root"]),
    message="--manifest and --ptbxl_root both name the data: give one of them")
flags.DEFINE_integer("num_patients", CohortConfig.num_patients, "Synthetic cohort: number of "
                     "patients.")
flags.DEFINE_float("prevalence", CohortConfig.prevalence, "Synthetic cohort: share of LVSD "
                   "patients.")
flags.DEFINE_float("phenotype_scale", CohortConfig.phenotype_scale, "Synthetic cohort: "
                   "strength of the LVSD-like phenotype (the default is calibrated to "
                   "full-label AUC ~0.9, docs/data.md).")
flags.DEFINE_integer("seed", 0, "Seed for data, splits, training and bootstrap.")
common.define_split_flags(__name__)      # used where the data has no splits yet
common.define_read_flags(__name__, on_error="skip")
flags.DEFINE_string("encoder", None, "Skip pretraining and use this encoder: a .keras file "
                    "or a shipped name (ptbxl-pool).")
flags.DEFINE_alias("pretrained_encoder", "encoder")     # the earlier name
flags.DEFINE_list("experiments", ["proposed", "baseline_unpretrained", "baseline_full_labels"],
                  "Experiments to run (paper Table 3).")
# the stages' settings: FinetuneConfig's flags as in `finetune`, PretrainConfig's as in
# `pretrain` (the optimizer's pretrain_-prefixed: --pretrain_epochs = pretrain's --epochs)
common.define_finetune_flags(__name__, stage="Fine-tuning")
common.define_pretrain_flags(__name__, common.REPRODUCE_PRETRAIN_PREFIXED, stage="MoCo")
flags.DEFINE_integer("n_boot", 2000, "Bootstrap resamples for the AUC CIs.")
flags.DEFINE_float("population_prevalence", None, "Also report PPV/NPV at this prevalence "
                   "(from sensitivity and specificity), e.g. the finding's prevalence where "
                   "the model will be used; the test split's own prevalence is enriched by "
                   "the paper design.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_string("export_dir", "", "Export the proposed classifier here (SavedModel, TFLite, "
                    "model card); empty: no export.")
flags.DEFINE_list("export_formats", ["savedmodel", "float32", "float16", "dynamic_int8", "int8"],
                  "Formats written by --export_dir (see `ecg-moco export`).")
flags.DEFINE_bool("explain", True, "Grad-CAM of the proposed classifier and of the pretrained "
                  "encoder on the test ECGs (figures, lead x wave attribution, faithfulness).")
flags.DEFINE_list("explain_methods", ["gradcam"], "Any of gradcam, gradcam++, scorecam, layercam.")
flags.DEFINE_integer("explain_max_ecgs", 0, "Explain a seeded sample of at most this many test "
                     "ECGs (0: all of them); the AUCs always use the whole test split.",
                     lower_bound=0)
flags.DEFINE_bool("label_efficiency", False, "Also run the label-efficiency study.")
flags.DEFINE_list("le_fractions", ["0.01", "0.05", "0.1", "0.28", "0.5", "1.0"],
                  "Label-efficiency fractions of train2.")
flags.DEFINE_list("le_seeds", ["0", "1", "2"], "Label-efficiency seeds.")
flags.DEFINE_bool("allow_unknown_encoder", False, "Run with an --encoder that carries no "
                  "provenance (--label_efficiency: how its epoch was chosen is unknown) or, "
                  "with --cv_folds, no pretrain_records.csv (what it saw cannot be checked); "
                  "default: refuse. Table 2 marks such an encoder either way.")
flags.DEFINE_integer("cv_folds", 0, "Cross-fold testing over this many folds of the labelled "
                     "ECGs (PTB-XL: 10, its strat_fold; a manifest: --fold_column): each fold "
                     "is the test split once, the next valid2 (the last fold: the first), the "
                     "others the training folds (0 or at least 3 folds); "
                     "one encoder (--encoder, or pretrained once on the unlabelled ECGs, e.g. "
                     "--ptbxl_pool) serves all folds; Table 2 pools the test predictions. 0: "
                     "off.", lower_bound=0)
flags.register_validator("cv_folds", lambda n: n == 0 or n >= 3,
                         message="--cv_folds: 0 (off) or at least 3 (a test fold, a valid2 "
                         "fold and training folds)")
flags.DEFINE_string("fold_column", None, "Cross-fold: the manifest column holding each ECG's "
                    "fold (default strat_fold or fold).")
flags.DEFINE_list("cv_test_folds", [], "Cross-fold: run only these test folds (default all).")
flags.DEFINE_float("train2_fraction", 0.28, "Cross-fold: share of the training folds' patients "
                   "(label-stratified) that proposed and the unpretrained baseline fine-tune "
                   "on (the paper's 28 %); full labels uses all of them.", lower_bound=0.0,
                   upper_bound=1.0)
flags.DEFINE_string("reuse_from", None, "Cross-fold: a finished cross-fold run whose fold "
                    "experiments with the same settings and data (each one's cv_settings.json: "
                    "the baselines, which do not depend on --encoder) are copied, not rerun.")
flags.DEFINE_list("le_folds", [], "Cross-fold with --label_efficiency: the test folds of the "
                  "study (default: every test fold run); its fractions are of all the "
                  "training folds.")


def _data(out, fractions):
    from ecg_moco_tf.data import assign_splits, manifest, ptbxl, synthetic
    from ecg_moco_tf.data.splits import SplitFractions

    if FLAGS.manifest:
        df = manifest.read_manifest(FLAGS.manifest)
        src = f"manifest {FLAGS.manifest}"
    elif FLAGS.ptbxl_root:        # cross-fold: every labelled fold is downstream
        df = ptbxl.folds_to_splits(ptbxl.ptbxl_manifest(FLAGS.ptbxl_root, FLAGS.ptbxl_label),
                                   pretrain_folds=[] if FLAGS.cv_folds else
                                   [int(f) for f in FLAGS.ptbxl_pretrain_folds])
        src = f"PTB-XL {FLAGS.ptbxl_root}, label {FLAGS.ptbxl_label}"
        if FLAGS.ptbxl_pool:
            df = ptbxl.add_pretraining_pool(
                df, ptbxl.ptbxl_manifest(FLAGS.ptbxl_pool, None), seed=FLAGS.seed,
                exclude_folds=[int(f) for f in FLAGS.ptbxl_pool_exclude_folds])
            s = df.attrs["pool_summary"]
            src += (f", plus {s['kept']} unlabelled pretraining ECGs from {FLAGS.ptbxl_pool} "
                    f"({s['dropped_downstream_patient']} dropped: patient downstream; "
                    f"{s['dropped_held_out_fold']} dropped: strat_fold "
                    f"{'/'.join(map(str, s['held_out_folds']))})")
    else:
        cfg = synthetic.CohortConfig(num_patients=FLAGS.num_patients,
                                     prevalence=FLAGS.prevalence,
                                     phenotype_scale=FLAGS.phenotype_scale, seed=FLAGS.seed)
        cohort = os.path.join(out, "cohort")
        df = synthetic.write_cohort(cohort, cfg)
        df = manifest.read_manifest(manifest.write_manifest(df, os.path.join(cohort,
                                                                             "manifest.csv")))
        src = f"synthetic cohort (seed {FLAGS.seed})"
    if FLAGS.cv_folds:
        return df, src
    if df["split"].isna().all():
        df = assign_splits(df, seed=FLAGS.seed, fractions=fractions)
    elif fractions != SplitFractions():
        print(f"warning: the data has its splits ({src}); --downstream_negative_fraction, "
              "--valid1, --valid2 and --test are not used", file=sys.stderr)
    return df, src


def _select_rule():
    """The monitor's probe is fitted on every train2 label: an encoder chosen by it has seen
    them, which the label-efficiency study's few-label arms must not. There: the last epoch."""
    if FLAGS.label_efficiency and FLAGS.select_encoder == "monitor" and not FLAGS.encoder:
        print("--label_efficiency: the pretrained encoder is the last epoch's, not the one the "
              "monitor picks (its probe uses all train2 labels); the monitor still logs")
        return "last"
    return FLAGS.select_encoder


def _pretraining_check(check, *args):
    """``check(*args)``, its error naming reproduce's flags (``--pretrain_batch_size``, not
    pretrain's ``--batch_size``, which here is fine-tuning's)."""
    try:
        return check(*args)
    except ValueError as e:
        names = "|".join(common.REPRODUCE_PRETRAIN_PREFIXED)
        raise ValueError(re.sub(rf"(?<![-\w.])({names})=", r"--pretrain_\1=", str(e))) from None


def main(argv):
    del argv
    from ecg_moco_tf.data import split_summary, write_manifest
    from ecg_moco_tf.evaluation.plots import plot_calibration, plot_roc
    from ecg_moco_tf.evaluation.report import LABELS, table2, write_report
    from ecg_moco_tf.training import distribute
    from ecg_moco_tf.training import experiments as X
    from ecg_moco_tf.provenance import check_task_name
    from ecg_moco_tf.training.pretrain import (check_config, check_distribution, check_out_dir,
                                               pretrain)

    strategy = common.strategy_from_flags("batch_size", "pretrain_batch_size")   # first
    out = distribute.worker_dir(FLAGS.out, strategy)      # FLAGS.out on the chief
    chief = distribute.is_chief(strategy)
    check_task_name(FLAGS.task_name)
    ft = common.finetune_config()                         # bad settings: fail before any work
    pt = common.pretrain_config(common.REPRODUCE_PRETRAIN_PREFIXED, select=_select_rule())
    _pretraining_check(check_distribution, pt, strategy)
    needs_encoder = "proposed" in FLAGS.experiments or FLAGS.label_efficiency
    if FLAGS.encoder:
        from ecg_moco_tf.pretrained import encoder_path

        FLAGS.encoder = encoder_path(FLAGS.encoder)
    if needs_encoder and not FLAGS.encoder:
        check_out_dir(os.path.join(out, "pretrain"), FLAGS.overwrite)      # before any work
    if os.path.exists(os.path.join(out, "results.json")) and not FLAGS.overwrite:
        raise FileExistsError(f"{out} holds a finished run (results.json, report); pass "
                              "--overwrite to replace it, or choose another --out")
    fractions = common.split_fractions_from_flags()                      # a bad share: now
    if fractions.test == 0:
        raise ValueError("--test=0 leaves no test split, and the experiments are scored on it: "
                         "give a share (e.g. 0.15) or a number of test patients")
    enc_kwargs = common.encoder_kwargs()
    os.makedirs(out, exist_ok=True)
    X.stage("1/5 data")
    df, source = _data(out, fractions)
    notes = [f"data: {source}; {len(df)} ECGs, {df['patient_id'].nunique()} patients"]
    cv = _cv_plan(df) if FLAGS.cv_folds else None       # fold mistakes: before any record
    n_all = len(df)
    df = common.readable_records(df, out)
    if len(df) < n_all:
        notes.append(f"{n_all - len(df)} unreadable records left out, listed in problems.csv")
    if FLAGS.cv_folds:
        return _cross_fold(df, out, notes, ft, pt, enc_kwargs, strategy, *cv)
    write_manifest(df, os.path.join(out, "manifest_with_splits.csv"))
    splits_table = split_summary(df)
    print(splits_table.to_string())
    if FLAGS.label_efficiency:                    # too few labels: fail now, before training
        try:
            X.label_subsets(df, [float(f) for f in FLAGS.le_fractions],
                            [int(s) for s in FLAGS.le_seeds])
        except ValueError as e:
            print(f"ecg-moco reproduce: --le_fractions: {e}", file=sys.stderr)
            return 2

    encoder_note = None
    if FLAGS.encoder:
        from ecg_moco_tf.provenance import check_label_efficiency_encoder, warn_if_seen

        if FLAGS.label_efficiency:
            check_label_efficiency_encoder(FLAGS.encoder, FLAGS.allow_unknown_encoder)
        encoder_note = _encoder_note(FLAGS.encoder)
        down = df[df["split"].isin(["train2", "valid2", "test"])]
        seen = warn_if_seen(FLAGS.encoder, down, "train2/valid2/test",
                            common.read_options_from_flags())
        if seen:
            notes.append(f"WARNING: {seen} of the {len(down)} train2/valid2/test ECGs were in "
                         "the encoder's pretraining data")
    for name in FLAGS.experiments:     # empty splits, < 2 of a class, bad settings: fail now
        notes += [f"WARNING: {w}" for w in X.check_class_counts(df, name)]
    if needs_encoder and not FLAGS.encoder:
        view = X.experiment_view(df, "proposed", require=("pretrain_train", "pretrain_valid"))
        _pretraining_check(check_config, pt, len(view["pretrain_train"]),
                           len(view["pretrain_valid"]))
    encoder_path, monitor_png = FLAGS.encoder, None
    if needs_encoder and not encoder_path:
        X.stage("2/5 MoCo pretraining on train1/valid1 (labels unused; monitor: frozen "
                "features train2 -> valid2)")
        view = X.experiment_view(df, "proposed")
        import keras

        from ecg_moco_tf.models import build_encoder

        keras.utils.set_random_seed(FLAGS.seed)           # seeds the encoder's initial weights
        pretrain(view["pretrain_train"], view["pretrain_valid"], os.path.join(out, "pretrain"),
                 pt, encoder=build_encoder(**enc_kwargs), overwrite=FLAGS.overwrite,
                 monitor_train_df=view["train"], monitor_valid_df=view["valid"],
                 strategy=strategy)
        encoder_path = os.path.join(out, "pretrain", "encoder.keras")
        monitor_png, chosen = _monitor_figure(out)
        notes.append(f"pretrained encoder: {encoder_path} ({chosen})")
        encoder_note = _encoder_note(encoder_path)
    if encoder_note and "proposed" in FLAGS.experiments:
        notes.append(f"NOTE on Proposed: {encoder_note}")
    preds, sweeps, valids = {}, {}, {}
    for i, name in enumerate(FLAGS.experiments):
        X.stage(f"3/5 experiment {i + 1}/{len(FLAGS.experiments)}: {name}")
        preds[name], sweeps[name], valids[name] = X.run_experiment(
            df, name, out, ft, encoder_path if name == "proposed" else None, enc_kwargs,
            task_name=FLAGS.task_name, strategy=strategy)
    settings = {**X.experiments_settings(ft, pt), "encoder": enc_kwargs, "source": source,
                "strategy": distribute.describe(strategy)}
    summary, tests, figures = {}, {}, {}
    if monitor_png:
        figures["monitor"] = monitor_png
    if preds:
        X.stage("4/5 evaluation (patient bootstrap, DeLong)")
        summary, tests = X.summarize(preds, n_boot=FLAGS.n_boot, seed=FLAGS.seed,
                                     valid_predictions=valids,
                                     population_prevalence=FLAGS.population_prevalence)
        figures["roc"] = plot_roc({LABELS[n]: (p["label"].astype(int), p["probability"],
                                               summary[n]) for n, p in preds.items()},
                                  os.path.join(out, "roc.png"),
                                  title=f"ROC on the test split: {FLAGS.task_name}")
        figures["calibration"] = plot_calibration(
            {LABELS[n]: (preds[n]["label"].astype(int), preds[n]["probability"], s)
             for n, s in summary.items()},
            os.path.join(out, "calibration.png"), task_name=FLAGS.task_name)
    if FLAGS.label_efficiency:
        X.stage("5/5 label efficiency")
        table, le_preds = X.label_efficiency(df, encoder_path, out, [float(f) for f in FLAGS.le_fractions],
                                   [int(s) for s in FLAGS.le_seeds], ft, enc_kwargs,
                                   task_name=FLAGS.task_name, strategy=strategy,
                                   resume=not FLAGS.overwrite,
                                   allow_unknown_encoder=FLAGS.allow_unknown_encoder)
        figures["label_efficiency"] = os.path.join(out, "label_efficiency.png")
        le_summary = X.label_efficiency_summary(table, le_preds)
        le_lines = ["## Label efficiency (test AUC, mean over seeds)", "",
                    X.label_efficiency_markdown(le_summary), ""]
        print("\n".join(le_lines))
    if not chief:                # other workers: same training, no export, figures or report
        return
    if FLAGS.export_dir and "proposed" in preds:
        X.stage(f"export of the proposed classifier to {FLAGS.export_dir}")
        from ecg_moco_tf.export import ParityError

        try:
            _export(df, os.path.join(out, "proposed", "classifier.keras"))
            notes.append(f"exported models: {FLAGS.export_dir} (see model_card.json)")
        except ParityError as e:                 # report the failure, keep the results
            print(e)
            notes.append(f"EXPORT FAILED its parity check ({FLAGS.export_dir}): {e}")
    explained = []
    if FLAGS.explain and "proposed" in preds:
        X.stage("explain: Grad-CAM of the proposed classifier and the pretrained encoder (test)")
        try:
            explained = _explain(df, out, encoder_path)
        except Exception as e:                   # report the failure, keep the results
            print(f"explain failed: {type(e).__name__}: {e}")
            notes.append(f"EXPLAIN FAILED: {type(e).__name__}: {e}")
    X.save_results(out, summary, tests, sweeps, settings,
                   le_summary if FLAGS.label_efficiency else None)
    if summary:
        with open(os.path.join(out, "results.json")) as f:
            run = json.load(f)["run"]            # the run the report's numbers come from
        notes.insert(0, f"run: `{run['command']}`, {run['date']}, commit {run['commit']}")
        path = write_report(out, splits_table, summary, tests, sweeps, figures,
                            {k: v for k, v in settings.items() if k != "experiments"}, notes,
                            explained + (le_lines if FLAGS.label_efficiency else []),
                            encoder_note=encoder_note)
        X.stage("done")
        print(table2(summary, tests, encoder_note))
        print(f"\nreport: {path}")


def _cv_plan(df):
    """The fold column, [(test fold, valid2 fold)] and the label-efficiency folds, checked
    from the manifest alone (``ValueError`` naming the flag to change)."""
    from ecg_moco_tf.training import crossfold as CV

    col = CV.fold_column(df, FLAGS.fold_column)
    plan = CV.fold_plan(df, col, FLAGS.cv_folds, [int(f) for f in FLAGS.cv_test_folds])
    tested = [k for k, _ in plan]
    le_folds = [int(f) for f in FLAGS.le_folds] or tested
    if FLAGS.label_efficiency and set(le_folds) - set(tested):
        raise ValueError(f"--le_folds {le_folds}: each must be a test fold of this run "
                         f"({tested}): add it to --cv_test_folds, or leave --le_folds empty "
                         "(all test folds)")
    return col, plan, le_folds


def _cross_fold(df, out, notes, ft, pt, enc_kwargs, strategy, col, plan, le_folds):
    """``--cv_folds``: the three experiments on every test fold (training/crossfold.py), one
    encoder for all, pooled Table 2, per-fold AUCs, label efficiency on ``--le_folds``."""
    from ecg_moco_tf.data import split_summary, write_manifest
    from ecg_moco_tf.evaluation.plots import plot_label_efficiency, plot_roc
    from ecg_moco_tf.evaluation.report import LABELS, table2, write_report
    from ecg_moco_tf.training import crossfold as CV
    from ecg_moco_tf.training import experiments as X

    fracs, seeds = [float(f) for f in FLAGS.le_fractions], [int(s) for s in FLAGS.le_seeds]
    manifests, le_manifests = {}, {}
    for k, v in plan:               # every fold's splits and class counts: before any training
        manifests[k] = CV.fold_manifest(df, col, k, v, FLAGS.train2_fraction,
                                        CV.fold_seed(FLAGS.seed, k))
        for name in FLAGS.experiments:
            notes += [f"WARNING (test fold {k}): {w}"
                      for w in X.check_class_counts(manifests[k], name)]
        if FLAGS.label_efficiency and k in le_folds:
            le_manifests[k] = CV.fold_manifest(df, col, k, v, 1.0, 0)
            try:
                X.label_subsets(le_manifests[k], fracs, seeds)
            except ValueError as e:
                raise ValueError(f"--le_folds: test fold {k}: {e}") from None
    labelled = df[df["label"].notna()]
    encoder_path = FLAGS.encoder
    if encoder_path:
        from ecg_moco_tf.provenance import (RECORDS_FILE, check_label_efficiency_encoder,
                                            encoder_records, warn_if_seen)

        if FLAGS.label_efficiency:
            check_label_efficiency_encoder(encoder_path, FLAGS.allow_unknown_encoder)
        if encoder_records(encoder_path) is None and not FLAGS.allow_unknown_encoder:
            raise ValueError(f"--encoder={encoder_path} has no {RECORDS_FILE} beside it, so "
                             "whether it was pretrained on any of the labelled ECGs (each a "
                             "test ECG once here) cannot be checked: use an encoder written by "
                             "`ecg-moco pretrain` (it lists them) or ptbxl-pool, or pass "
                             "--allow_unknown_encoder if you know it saw none")
        seen = warn_if_seen(encoder_path, labelled, "labelled (cross-fold)",
                            common.read_options_from_flags())
        if seen:                           # every labelled ECG is in some test fold
            raise ValueError(f"--encoder={encoder_path} was pretrained on {seen} of the "
                             f"{len(labelled)} labelled ECGs, and in cross-fold testing each "
                             "of them is a test ECG once: give an encoder pretrained on other "
                             "patients' ECGs, or let reproduce pretrain on the unlabelled ones")
    elif "proposed" in FLAGS.experiments or FLAGS.label_efficiency:
        encoder_path = _cross_fold_pretraining(df, out, pt, enc_kwargs, strategy, notes)
    encoder_note = _encoder_note(encoder_path) if encoder_path else None
    if encoder_note and ("proposed" in FLAGS.experiments or FLAGS.label_efficiency):
        notes.append(f"NOTE on the pretrained encoder: {encoder_note}")
    notes.append(f"cross-fold testing over {col} ({len(plan)} test folds, valid2 = the next "
                 f"fold); proposed and unpretrained fine-tune on {FLAGS.train2_fraction:.0%} of "
                 "the training folds' patients (label-stratified), full labels on all of them")
    frames, valid_frames, sweeps, reused = [], [], {}, 0
    if FLAGS.reuse_from and (FLAGS.overwrite or not os.path.isdir(FLAGS.reuse_from)):
        raise ValueError(f"--reuse_from={FLAGS.reuse_from}: " + (
            "--overwrite runs every fold again, so nothing would be reused" if FLAGS.overwrite
            else "no such folder (give the --out of a finished cross-fold run)"))
    copied = 0
    for k, _ in plan:                      # an experiment of another run is reused by none
        for name in FLAGS.experiments:     # (the baselines do not depend on the encoder)
            part = os.path.join(f"fold_{k:02d}", name)
            settings = CV.fold_settings(ft, enc_kwargs,
                                        encoder_path if name == "proposed" else None,
                                        FLAGS.train2_fraction, FLAGS.seed, FLAGS.task_name,
                                        manifests[k])
            CV.check_fold_settings(os.path.join(out, part), settings, FLAGS.overwrite)
            if FLAGS.reuse_from:
                copied += CV.copy_if_same(os.path.join(FLAGS.reuse_from, part),
                                          os.path.join(out, part), settings)
    if FLAGS.reuse_from:
        notes.append(f"{copied} fold experiments copied from --reuse_from={FLAGS.reuse_from} "
                     "(same settings and data: their cv_settings.json)")
    for i, (k, v) in enumerate(plan):
        fold_out = os.path.join(out, f"fold_{k:02d}")
        write_manifest(manifests[k], os.path.join(fold_out, "manifest_with_splits.csv"))
        preds, valids = {}, {}
        for name in FLAGS.experiments:
            path = os.path.join(fold_out, name)
            if CV.done(path) and not FLAGS.overwrite:
                X.stage(f"test fold {k} ({i + 1}/{len(plan)}, valid2 fold {v}): {name}: "
                        f"reused ({path} holds its predictions)")
                preds[name], valids[name] = CV.read_predictions(path, FLAGS.task_name,
                                                                 manifests[k])
                reused += 1
                continue
            X.stage(f"test fold {k} ({i + 1}/{len(plan)}, valid2 fold {v}): {name}")
            preds[name], sweep, valids[name] = X.run_experiment(
                manifests[k], name, fold_out, ft, encoder_path if name == "proposed" else None,
                enc_kwargs, task_name=FLAGS.task_name, strategy=strategy)
            sweeps.setdefault(name, []).append(sweep.assign(test_fold=k))
        frames.append({n: p.assign(test_fold=k, patient_id=p["patient_id"].astype(str))
                       for n, p in preds.items()})
        valid_frames.append({n: p.assign(patient_id=p["patient_id"].astype(str))
                             for n, p in valids.items()})
    if reused:
        notes.append(f"{reused} of the {len(plan) * len(FLAGS.experiments)} fold experiments "
                     f"were reused: {out} held their predictions and provenance.json (same "
                     "settings and data: each one's cv_settings.json)")
    summary, tests, figures, lines = {}, {}, {}, []
    if FLAGS.experiments:
        X.stage("evaluation: pooled test predictions and each fold (patient bootstrap, DeLong)")
        summary, tests, per_fold, means = CV.summarize_folds(
            frames, valid_frames, [k for k, _ in plan], FLAGS.n_boot, FLAGS.seed,
            FLAGS.population_prevalence)
        pooled = CV.pooled(frames)
        for name, p in pooled.items():
            X.save_predictions(p, os.path.join(out, f"test_predictions_{name}.csv"),
                               FLAGS.task_name)
        per_fold.round(6).to_csv(os.path.join(out, "per_fold.csv"), index=False)
        figures["roc"] = plot_roc({LABELS[n]: (p["label"].astype(int), p["probability"],
                                               summary[n]) for n, p in pooled.items()},
                                  os.path.join(out, "roc.png"), title="ROC, test predictions "
                                  f"pooled over {len(plan)} folds: {FLAGS.task_name}")
        lines += _fold_lines(per_fold, means, summary, tests)
    le_summary = None
    if FLAGS.label_efficiency:
        tables, le_preds = [], []
        for k in le_folds:
            X.stage(f"label efficiency on test fold {k}")
            t, p = _fold_label_efficiency(le_manifests[k], encoder_path, out, k, fracs, seeds,
                                          ft, enc_kwargs, strategy)
            tables.append(t.assign(test_fold=k))
            le_preds.append(p.assign(test_fold=k, patient_id=p["patient_id"].astype(str)))
        le_preds = pd.concat(le_preds, ignore_index=True)
        table = tables[0] if len(tables) == 1 else CV.pooled_label_efficiency(tables, le_preds)
        table.to_csv(os.path.join(out, "label_efficiency.csv"), index=False)
        le_summary = X.label_efficiency_summary(table, le_preds, n_boot=FLAGS.n_boot)
        le_summary.round(6).to_csv(os.path.join(out, "label_efficiency_summary.csv"),
                                   index=False)
        figures["label_efficiency"] = plot_label_efficiency(
            table, os.path.join(out, "label_efficiency.png"), FLAGS.task_name)
        lines += [f"## Label efficiency (test folds {', '.join(map(str, le_folds))}"
                  + (", predictions pooled" if len(le_folds) > 1 else "") + "; shares of all "
                  "the training folds' labels)", "", X.label_efficiency_markdown(le_summary), ""]
        print("\n".join(lines[-4:]))
    settings = {**X.experiments_settings(ft, pt), "encoder": enc_kwargs,
                "cross_fold": {"fold_column": col, "plan": plan,
                               "train2_fraction": FLAGS.train2_fraction, "seed": FLAGS.seed,
                               "label_efficiency_folds": le_folds if FLAGS.label_efficiency
                               else []}}
    X.save_results(out, summary, tests,
                   {n: pd.concat(v, ignore_index=True) for n, v in sweeps.items()}, settings,
                   le_summary, extra={"per_fold": per_fold.to_dict(orient="records"),
                                      "fold_means": means.to_dict(orient="records")}
                   if FLAGS.experiments else None)
    with open(os.path.join(out, "results.json")) as f:
        run = json.load(f)["run"]
    notes.insert(0, f"run: `{run['command']}`, {run['date']}, commit {run['commit']}")
    splits = split_summary(pd.concat(manifests.values()))     # train1: full labels only
    path = write_report(out, splits, summary, tests, {}, figures, settings, notes, lines,
                        encoder_note=encoder_note, title="ecg-moco-tf cross-fold report",
                        splits_title=f"Data splits, summed over the {len(plan)} test folds",
                        paper_design=False)
    X.stage("done")
    if summary:
        print(table2(summary, tests, encoder_note))
    print(f"\nreport: {path}")


def _fold_lines(per_fold, means, summary, tests):
    """Report lines: each fold's AUCs, what one fold vs the pooled folds can resolve, and the
    paired differences both ways (pooled patient bootstrap; t over folds)."""
    from ecg_moco_tf.evaluation.report import LABELS

    wide = per_fold.pivot(index="test_fold", columns="model", values="auc")
    lines = ["## Each test fold (test AUC)", "", wide.round(3).to_markdown(), "",
             "## Power: one fold against all folds pooled", "",
             "| model | mean AUC over folds [t 95 % CI over folds] | mean CI half-width of one "
             "fold | CI half-width, pooled |", "|---|---|---|---|"]
    for r in means.itertuples():
        s = summary[r.model]
        lines.append(f"| {LABELS.get(r.model, r.model)} | {r.mean_auc:.3f} [{r.ci_low:.3f}, "
                     f"{r.ci_high:.3f}] | {r.mean_single_fold_half_width:.3f} | "
                     f"{(s['auc_ci_high'] - s['auc_ci_low']) / 2:.3f} |")
    if "proposed_minus_model" in means:
        lines += ["", "## Proposed - baseline, two ways", "",
                  "The pooled patient bootstrap holds the trained models fixed; the t interval "
                  "over folds also varies them (each fold trains its own models on its own "
                  "train2 subsample). Read the wider one.", "",
                  "| baseline | pooled, patient bootstrap [95 % CI] | mean over folds [t 95 % CI]"
                  " |", "|---|---|---|"]
        for r in means.dropna(subset=["proposed_minus_model"]).itertuples():
            d = tests[f"proposed_vs_{r.model}"]["paired_bootstrap"]
            lines.append(f"| {LABELS.get(r.model, r.model)} | {d['difference']:+.3f} "
                         f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] | "
                         f"{r.proposed_minus_model:+.3f} [{r.diff_ci_low:+.3f}, "
                         f"{r.diff_ci_high:+.3f}] |")
    return lines + [""]


def _fold_label_efficiency(df, encoder_path, out, k, fracs, seeds, ft, enc_kwargs, strategy):
    """One test fold's label-efficiency study (its finished runs reused unless --overwrite)."""
    from ecg_moco_tf.training import experiments as X

    return X.label_efficiency(df, encoder_path, os.path.join(out, f"fold_{k:02d}",
                                                             "label_efficiency"),
                              fracs, seeds, ft, enc_kwargs, task_name=FLAGS.task_name,
                              strategy=strategy, resume=not FLAGS.overwrite,
                              allow_unknown_encoder=FLAGS.allow_unknown_encoder)


def _cross_fold_pretraining(df, out, pt, enc_kwargs, strategy, notes):
    """Pretrain once, for every fold, on the unlabelled ECGs (no downstream patient)."""
    import keras

    from ecg_moco_tf.data.splits import _stratified
    from ecg_moco_tf.models import build_encoder
    from ecg_moco_tf.training import experiments as X
    from ecg_moco_tf.training.pretrain import check_config, pretrain

    lab = df["label"].notna()
    pre = df[~lab].copy()
    shared = set(pre["patient_id"].astype(str)) & set(df.loc[lab, "patient_id"].astype(str))
    if not len(pre) or shared:
        raise ValueError("cross-fold testing pretrains once on unlabelled ECGs of no labelled "
                         f"patient; the data has {len(pre)} unlabelled ECGs"
                         + (f", {len(shared)} of whose patients are labelled" if shared else "")
                         + ": give --ptbxl_pool (or unlabelled ECGs of other patients), or an "
                         "encoder pretrained without the labelled patients (--encoder)")
    if not pre["split"].isin(["train1", "valid1"]).all():
        ids = np.sort(pre["patient_id"].astype(str).unique())
        train, valid = _stratified(ids, np.zeros(len(ids)), 0.2, FLAGS.seed)
        pre["split"] = pre["patient_id"].astype(str).map(
            dict.fromkeys(train, "train1") | dict.fromkeys(valid, "valid1"))
    tr, va = (pre[pre["split"] == s] for s in ("train1", "valid1"))
    _pretraining_check(check_config, pt, len(tr), len(va))
    if pt.select == "monitor":            # no monitor here: no downstream label in the choice
        pt = dataclasses.replace(pt, select="last")
    X.stage(f"MoCo pretraining once, on {len(pre)} unlabelled ECGs of no labelled patient")
    keras.utils.set_random_seed(FLAGS.seed)
    pretrain(tr, va, os.path.join(out, "pretrain"), pt, encoder=build_encoder(**enc_kwargs),
             overwrite=FLAGS.overwrite, strategy=strategy)
    notes.append(f"pretrained encoder: {out}/pretrain/encoder.keras, on {len(tr)} + {len(va)} "
                 "unlabelled ECGs of no labelled patient (last epoch unless --select_encoder)")
    return os.path.join(out, "pretrain", "encoder.keras")


def _encoder_note(path):
    """Why Table 2 marks the proposed row: its encoder's epoch was chosen with downstream
    labels, or how it was chosen is unknown; None when neither."""
    from ecg_moco_tf.provenance import read_encoder_provenance

    prov = read_encoder_provenance(path)
    if not prov:
        return "the encoder carries no provenance: how its epoch was chosen is unknown"
    if prov.get("labels_seen"):
        return (f"the encoder's epoch was chosen by {prov['selected_by']} with the labels of "
                f"{'/'.join(prov['labels_seen_splits'])}: optimistic for the proposed row")
    return None


def _monitor_figure(out):
    """``<out>/monitor.png`` from ``<out>/pretrain/pretrain_log.csv`` (None without monitor
    values) and a note on how the saved encoder was chosen."""
    import json

    from ecg_moco_tf.evaluation.plots import plot_monitor

    pre = os.path.join(out, "pretrain")
    with open(os.path.join(pre, "pretrain_config.json")) as f:
        cfg = json.load(f)
    by, epoch, value = cfg.get("selected_by"), cfg.get("best_epoch"), cfg.get("selected_value")
    what = {"monitor": "valid2 probe AUC", "val_loss": "valid1 MoCo loss"}.get(by)
    chosen = f"selected by {by}, epoch {epoch}" + (f", {what} {value:.4f}" if what and value
                                                   is not None else "")
    png = plot_monitor(os.path.join(pre, "pretrain_log.csv"), os.path.join(out, "monitor.png"),
                       selected_epoch=epoch, selected_by=by)
    return png, chosen


def _explain(df, out, encoder_path):
    """Explain the proposed classifier and (paper Figure 2) the pretrained encoder on the test
    split; the encoder's class prototypes come from train2. Returns report lines."""
    from ecg_moco_tf.explain.cohort import explain_cohort
    from ecg_moco_tf.models import load_model

    def part(split):
        view = df[df["split"] == split].reset_index(drop=True)
        view.attrs = dict(df.attrs)
        return view

    test, n = part("test"), FLAGS.explain_max_ecgs
    title = "Grad-CAM on the test ECGs"
    if n and n < len(test):
        test = test.sample(n=n, random_state=FLAGS.seed).sort_index().reset_index(drop=True)
        test.attrs = dict(df.attrs)
        title = f"Grad-CAM on {n} of the test ECGs, a seeded sample"
    lines = [f"## Explanations ({title})", ""]
    for name, path, ref in (("classifier", os.path.join(out, "proposed", "classifier.keras"),
                             None), ("encoder", encoder_path, part("train2"))):
        res = explain_cohort(load_model(path), test,
                             os.path.join(out, "explain", name),
                             methods=FLAGS.explain_methods, reference=ref, formats=("png",),
                             seed=FLAGS.seed, options=common.read_options_from_flags(),
                             task_name=FLAGS.task_name)
        what = ("proposed classifier, score = class logit" if name == "classifier" else
                "pretrained encoder (paper Figure 2), score = cosine to the class prototype")
        lines += [f"**{what}**: [summary](explain/{name}/summary.md)", ""]
        for method, r in res["methods"].items():
            f = r.get("faithfulness")
            if f:
                lines.append(f"- {method}: energy in the ground-truth mask "
                             f"{f['energy_in_mask']:.3f} (random maps "
                             f"{f['energy_in_mask_random']:.3f}), pointing game "
                             f"{f['pointing_game']:.3f} (random {f['pointing_game_random']:.3f}),"
                             f" deletion AUC {f['deletion_area']:.3f} (random "
                             f"{f['deletion_area_random']:.3f}; lower is better); "
                             f"{f['n_ecgs']} positives")
            lines.append(f"- ![{name} {method} attribution](explain/{name}/"
                         f"{method.replace('+', 'p')}/attribution.png)")
        lines.append("")
    return lines


def _export(df, model_path):
    from ecg_moco_tf.export import export_from_manifest

    card = export_from_manifest(model_path, df, FLAGS.export_dir, seed=FLAGS.seed,
                                formats=FLAGS.export_formats,
                                options=common.read_options_from_flags(),
                                task_name=FLAGS.task_name)
    for kind, r in card["parity"]["formats"].items():
        print(f"{kind:13s} {r['bytes'] / 1e3:9.1f} kB  max|diff| {r['max_abs_diff']:.2e}")
