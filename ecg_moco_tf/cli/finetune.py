"""Fine-tune and test one experiment of the paper's Table 3 on a manifest with splits.

Example: ecg-moco finetune --manifest=runs/demo/manifest_with_splits.csv \
             --flagfile=flags/proposed.flags --encoder=runs/demo/pretrain/encoder.keras
The learning-rate sweep keeps the model with the lowest validation loss; the test AUC is
printed with its 95 % patient-bootstrap CI. Writes classifier.keras, lr_sweep.csv,
test_predictions.csv (column p_<task_name>), metrics.json, report.md (with roc.png and
calibration.png) and provenance.json (task, experiment,
pretrained encoder; `ecg-moco export` puts it in the model card) to --out. --encoder is for
--experiment=proposed only (the baselines start from random weights). Every record used is read
once before training: an unreadable one stops the command (--on_error=raise) or is left out,
listed in <out>/problems.csv (--on_error=skip). An --out that holds a finished run
(classifier.keras) is refused (exit 2) unless --overwrite replaces it.
--strategy, --mixed_precision, --jit_compile: docs/distributed.md (--batch_size is
the global batch). --verbose: Keras' progress bar within each epoch (default: one line per
epoch); every learning rate logs to <out>/tensorboard/lr<rate> and <out>/finetune_lr<rate>.csv.
"""
import json
import os

from absl import flags

from ecg_moco_tf.cli import common

FLAGS = flags.FLAGS
common.define_manifest_flag(__name__)
common.define_encoder_flags(__name__)
common.define_read_flags(__name__, on_error="raise")
common.define_distribute_flags(__name__)
common.define_finetune_flags(__name__)             # FinetuneConfig: types and defaults
flags.DEFINE_enum("experiment", "proposed", ["proposed", "baseline_unpretrained",
                                             "baseline_full_labels"], "Which Table 3 row.")
flags.DEFINE_string("encoder", None, "Pretrained encoder: a .keras file or a shipped name "
                    "(ptbxl-pool); required for 'proposed'.")
flags.DEFINE_alias("pretrained_encoder", "encoder")         # reproduce's earlier name
flags.DEFINE_string("out", "runs/finetune", "Output folder (created).")
flags.DEFINE_bool("overwrite", False, "Replace a finished fine-tuning run in --out (default: "
                  "refuse, so a trained classifier is never lost by accident).")
flags.DEFINE_float("population_prevalence", None, "Also report PPV/NPV at this prevalence "
                   "(from sensitivity and specificity), e.g. the finding's prevalence where "
                   "the model will be used (strictly between 0 and 1).", lower_bound=1e-6,
                   upper_bound=1 - 1e-6)
flags.DEFINE_string("task_name", "positive", "What the classifier detects, e.g. MI or LVSD: "
                    "test_predictions.csv's column p_<task>, provenance.json, the model card.")


def main(argv):
    del argv
    import pandas as pd

    from ecg_moco_tf.data import read_manifest
    from ecg_moco_tf.pretrained import encoder_path
    from ecg_moco_tf.provenance import check_task_name, write_provenance
    from ecg_moco_tf.training import distribute
    from ecg_moco_tf.provenance import warn_if_seen
    from ecg_moco_tf.training.experiments import (check_class_counts, check_encoder,
                                                  decision_threshold, experiment_view,
                                                  load_encoder, save_predictions, summarize)
    from ecg_moco_tf.training.finetune import finetune, predict

    check_encoder(FLAGS.experiment, FLAGS.encoder)
    common.refuse_architecture_with_encoder(FLAGS.encoder)
    check_task_name(FLAGS.task_name)
    if os.path.exists(os.path.join(FLAGS.out, "classifier.keras")) and not FLAGS.overwrite:
        raise SystemExit(f"--out={FLAGS.out} holds a finished fine-tuning run "
                         "(classifier.keras): choose another --out, or pass --overwrite to "
                         "replace it")
    strategy = common.strategy_from_flags("batch_size")  # first: before other TensorFlow work
    encoder_file = encoder_path(FLAGS.encoder) if FLAGS.encoder else None
    parts = ("train", "valid", "test")
    df = read_manifest(FLAGS.manifest)
    view = experiment_view(df, FLAGS.experiment, require=parts)
    check_class_counts(df, FLAGS.experiment)           # < 2 of a class: refused before training
    encoder = load_encoder(encoder_file) if encoder_file else None
    cfg = common.finetune_config()
    enc_kwargs = common.encoder_kwargs()                # checked before any ECG is read
    used = df.loc[df.index.isin(set().union(*(view[k].index for k in parts)))]
    view = experiment_view(common.readable_records(used, FLAGS.out), FLAGS.experiment,
                           require=parts)
    out = distribute.worker_dir(FLAGS.out, strategy)    # FLAGS.out on the chief
    if encoder_file:
        warn_if_seen(encoder_file, pd.concat([view[k] for k in parts]), "train/valid/test",
                     cfg.read_options)
    res = finetune(view["train"], view["valid"], encoder, cfg, out, enc_kwargs, strategy)
    pred = predict(res.model, view["test"], options=cfg.read_options)
    valid = res.valid_predictions                    # predicted once, in finetune()
    save_predictions(pred, os.path.join(out, "test_predictions.csv"), FLAGS.task_name)
    save_predictions(valid, os.path.join(out, "valid_predictions.csv"), FLAGS.task_name)
    write_provenance(out, FLAGS.experiment, FLAGS.task_name, encoder_file,
                     threshold=decision_threshold(valid))
    summary, _ = summarize({FLAGS.experiment: pred}, seed=FLAGS.seed,
                           valid_predictions={FLAGS.experiment: valid},
                           population_prevalence=FLAGS.population_prevalence)
    m = summary[FLAGS.experiment]
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(m, f, indent=1)
    print(res.sweep.to_string(index=False))
    print(f"{FLAGS.experiment} ({FLAGS.task_name}): test AUC {m['auc']:.4f} "
          f"[{m['auc_ci_low']:.4f}, {m['auc_ci_high']:.4f}] "
          f"(best learning rate {res.best_learning_rate:g})")
    if distribute.is_chief(strategy):
        paper = df["split"].isin(["train1", "valid1"]).any()     # the paper's enriched design
        print(f"report: {_report(out, used, summary, res.sweep, pred, encoder_file, paper)}")


def _report(out, used, summary, sweep, pred, encoder_file, paper_design):
    """report.md beside roc.png and calibration.png: splits, test AUC, operating points
    (chosen on valid), the learning-rate sweep, with the command, date and commit."""
    from ecg_moco_tf.data import split_summary
    from ecg_moco_tf.evaluation.plots import plot_calibration, plot_roc
    from ecg_moco_tf.evaluation.report import LABELS, write_report
    from ecg_moco_tf.provenance import run_info

    name, run = LABELS[FLAGS.experiment], run_info()
    curves = {name: (pred["label"].astype(int), pred["probability"],
                     summary[FLAGS.experiment])}
    figures = {"roc": plot_roc(curves, os.path.join(out, "roc.png"),
                               title=f"ROC on the test split: {FLAGS.task_name}"),
               "calibration": plot_calibration(curves, os.path.join(out, "calibration.png"),
                                               task_name=FLAGS.task_name)}
    notes = [f"run: `{run['command']}`, {run['date']}, commit {run['commit']}",
             f"manifest: {FLAGS.manifest}; experiment {FLAGS.experiment}; encoder: "
             f"{encoder_file or 'random initialization'}"]
    return write_report(out, split_summary(used), summary, {}, {FLAGS.experiment: sweep},
                        figures, common.finetune_config(), notes,
                        title=f"ecg-moco-tf fine-tuning report: {FLAGS.task_name}",
                        splits_title="Data splits", paper_design=paper_design)
