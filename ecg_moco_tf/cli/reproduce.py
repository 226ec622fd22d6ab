"""The main job: data -> splits -> MoCo pretraining -> the paper's three experiments ->
Table 2 with 95 % CIs and DeLong p-values, a Markdown report and figures.

Data: the built-in synthetic cohort (default), --manifest (any manifest; splits are assigned
if its 'split' column is empty), or --ptbxl_root with --ptbxl_label (official strat_fold:
--ptbxl_pretrain_folds pretrain, fold 9 valid2, fold 10 test, the rest train2).
Examples:
  ecg-moco reproduce --flagfile=flags/demo.flags                      # what `make demo` runs
  ecg-moco reproduce --flagfile=flags/reproduce_paper_scale.flags     # 37,103 synthetic ECGs
  ecg-moco reproduce --ptbxl_root=../shared/data/ptbxl-subset --ptbxl_label=MI --out=runs/ptbxl
  ecg-moco reproduce --flagfile=flags/ptbxl_mi.flags     # + ptbxl-pool as unlabelled pretraining
An unfinished pretraining in <out>/pretrain is resumed; a finished one is refused (exit code 2)
unless --overwrite (then it is pretrained again).
Several GPUs or machines: --strategy=mirrored|multi_worker, --mixed_precision, --jit_compile,
--sync_bn (README "Distributed training"); --batch_size and --pretrain_batch_size are global.
"""
import os
import sys

from absl import flags

from ecg_moco_tf.cli import common
from ecg_moco_tf.data.synthetic import CohortConfig

FLAGS = flags.FLAGS
common.define_encoder_flags(__name__)
common.define_distribute_flags(__name__, sync_bn=True)
flags.DEFINE_string("out", "runs/reproduce", "Output folder (report.md, results.json, ...).")
flags.DEFINE_bool("overwrite", False, "Pretrain again over a finished run in <out>/pretrain "
                  "(default: refuse it; an unfinished one is resumed).")
flags.DEFINE_string("manifest", None, "Use this manifest instead of the synthetic cohort.")
flags.DEFINE_string("ptbxl_root", None, "Use a PTB-XL folder instead of the synthetic cohort.")
flags.DEFINE_string("ptbxl_label", "MI", "PTB-XL superclass or SCP code to predict.")
flags.DEFINE_string("task_name", "positive", "What the classifier detects, e.g. MI or LVSD: the "
                    "probability column p_<task> of the CSVs, figure titles, the model card.")
flags.DEFINE_list("ptbxl_pretrain_folds", ["1", "2", "3", "4", "5"],
                  "PTB-XL strat_folds used for pretraining (train1/valid1).")
flags.DEFINE_string("ptbxl_pool", None, "With --ptbxl_root: another PTB-XL folder (e.g. "
                    "../shared/data/ptbxl-pool) added as unlabelled pretraining ECGs; pool ECGs "
                    "of patients in train2/valid2/test are dropped.")
flags.register_multi_flags_validator(
    ["ptbxl_pool", "ptbxl_root"], lambda f: not f["ptbxl_pool"] or bool(f["ptbxl_root"]),
    message="--ptbxl_pool needs --ptbxl_root (the labelled PTB-XL folder)")
flags.register_multi_flags_validator(
    ["manifest", "ptbxl_root"], lambda f: not (f["manifest"] and f["ptbxl_root"]),
    message="--manifest and --ptbxl_root both name the data: give one of them")
flags.DEFINE_integer("num_patients", 1000, "Synthetic cohort: number of patients.")
flags.DEFINE_float("prevalence", 0.10, "Synthetic cohort: share of LVSD patients.")
flags.DEFINE_float("phenotype_scale", CohortConfig.phenotype_scale, "Synthetic cohort: "
                   "strength of the LVSD-like phenotype (the default is calibrated to "
                   "full-label AUC ~0.9, README).")
flags.DEFINE_integer("seed", 0, "Seed for data, splits, training and bootstrap.")
common.define_read_flags(__name__, on_error="skip")
flags.DEFINE_string("pretrained_encoder", None, "Skip pretraining and use this encoder: a "
                    ".keras file or a shipped name (ptbxl-pool). Alias: --encoder.")
flags.DEFINE_alias("encoder", "pretrained_encoder")
flags.DEFINE_integer("pretrain_epochs", 50, "MoCo epochs.")
flags.DEFINE_integer("pretrain_batch_size", 64, "MoCo batch size.")
flags.DEFINE_float("pretrain_learning_rate", 1e-3, "MoCo Adam learning rate.")
flags.DEFINE_integer("queue_size", 4096, "MoCo queue size K.")
flags.DEFINE_float("moco_momentum", 0.999, "MoCo key-encoder momentum.")
flags.DEFINE_float("moco_momentum_final", None, "If set: the key momentum follows a cosine from "
                   "--moco_momentum to this over the whole pretraining (e.g. 0.9 -> 0.99).")
flags.DEFINE_integer("pretrain_warmup_steps", 0, "MoCo: linear learning-rate warm-up from 0 "
                     "over this many optimizer steps.")
flags.DEFINE_enum("pretrain_lr_schedule", "constant", ["constant", "cosine"], "MoCo learning "
                  "rate after the warm-up: constant, or cosine decay to 0 at the last step.")
flags.DEFINE_list("augmentations", [], "MoCo transform class names; empty = the paper's five.")
flags.DEFINE_float("augment_probability", 0.5, "MoCo: per-sample probability of each "
                   "transform.")
flags.DEFINE_string("augment_overrides", "", "MoCo: per-transform constructor arguments as "
                    'JSON, e.g. \'{"GaussianNoise": {"max_std_mv": 0.1}}\'.')
flags.DEFINE_float("temperature", 0.2, "InfoNCE temperature.")
flags.DEFINE_integer("monitor_every", 1, "Representation monitor (kNN / logistic-probe AUC "
                     "train2 -> valid2, alignment, uniformity) every N pretraining epochs; 0: off.")
flags.DEFINE_enum("select_encoder", "monitor", ["monitor", "last", "val_loss"],
                  "Pretrained encoder kept: highest monitor probe AUC, last epoch, or lowest "
                  "MoCo validation loss (not comparable across epochs).")
flags.DEFINE_list("experiments", ["proposed", "baseline_unpretrained", "baseline_full_labels"],
                  "Experiments to run (paper Table 3).")
flags.DEFINE_list("learning_rates", ["1e-4", "3e-5", "1e-5"], "Fine-tuning LR sweep.")
flags.DEFINE_integer("epochs", 50, "Fine-tuning epochs (early stopping on valid loss).")
flags.DEFINE_integer("batch_size", 32, "Fine-tuning batch size.")
flags.DEFINE_integer("patience", 5, "Early-stopping patience (epochs).")
flags.DEFINE_integer("hidden_units", 64, "Width of the classifier's hidden dense layer.")
flags.DEFINE_enum("class_weight", "none", ["none", "balanced"], "Class weighting of the loss.")
flags.DEFINE_float("dropout", 0.0, "Fine-tuning: dropout before the classifier's output layer.")
flags.DEFINE_bool("augment", False, "Fine-tuning: augment training ECGs (pretraining's layers).")
flags.DEFINE_float("bn_momentum", 0.9, "Fine-tuning: momentum of the encoder's batch-norm "
                   "statistics (0.99 = Keras default, the paper protocol).")
flags.DEFINE_float("weight_decay", 0.0, "Fine-tuning: > 0 uses AdamW with this weight decay.")
flags.DEFINE_float("encoder_lr_multiplier", 1.0, "Fine-tuning: encoder learning rate relative "
                   "to the head's.")
flags.DEFINE_integer("linear_probe_epochs", 0, "Fine-tuning: head-only epochs (encoder frozen) "
                     "before fine-tuning (LP-FT).")
flags.DEFINE_bool("reestimate_bn", False, "Fine-tuning: re-estimate batch-norm statistics on "
                  "the training ECGs before the final validation and saving.")
flags.DEFINE_integer("min_steps_per_epoch", 0, "Fine-tuning: repeat a training set smaller than this "
                     "many batches so every epoch has this many steps (0: one pass per epoch).")
flags.DEFINE_bool("cache", True, "Keep decoded ECGs in memory (turn off for large data).")
flags.DEFINE_integer("n_boot", 2000, "Bootstrap resamples for the AUC CIs.")
flags.DEFINE_string("export_dir", "", "Export the proposed classifier here (SavedModel, TFLite, "
                    "model card); empty: no export.")
flags.DEFINE_list("export_formats", ["savedmodel", "float32", "float16", "dynamic_int8", "int8"],
                  "Formats written by --export_dir (see `ecg-moco export`).")
flags.DEFINE_bool("explain", True, "Grad-CAM of the proposed classifier and of the pretrained "
                  "encoder on the test ECGs (figures, lead x wave attribution, faithfulness).")
flags.DEFINE_list("explain_methods", ["gradcam"], "Any of gradcam, gradcam++, scorecam, layercam.")
flags.DEFINE_bool("label_efficiency", False, "Also run the label-efficiency study.")
flags.DEFINE_list("le_fractions", ["0.01", "0.05", "0.1", "0.28", "0.5", "1.0"],
                  "Label-efficiency fractions of train2.")
flags.DEFINE_list("le_seeds", ["0", "1", "2"], "Label-efficiency seeds.")


def _data(out):
    from ecg_moco_tf.data import assign_splits, manifest, ptbxl, synthetic

    if FLAGS.manifest:
        df = manifest.read_manifest(FLAGS.manifest)
        src = f"manifest {FLAGS.manifest}"
    elif FLAGS.ptbxl_root:
        df = ptbxl.folds_to_splits(ptbxl.ptbxl_manifest(FLAGS.ptbxl_root, FLAGS.ptbxl_label),
                                   pretrain_folds=[int(f) for f in FLAGS.ptbxl_pretrain_folds])
        src = f"PTB-XL {FLAGS.ptbxl_root}, label {FLAGS.ptbxl_label}"
        if FLAGS.ptbxl_pool:
            df = ptbxl.add_pretraining_pool(df, ptbxl.ptbxl_manifest(FLAGS.ptbxl_pool, None),
                                            seed=FLAGS.seed)
            s = df.attrs["pool_summary"]
            src += (f", plus {s['kept']} unlabelled pretraining ECGs from {FLAGS.ptbxl_pool} "
                    f"({s['dropped_downstream_patient']} dropped: patient downstream)")
    else:
        cfg = synthetic.CohortConfig(num_patients=FLAGS.num_patients,
                                     prevalence=FLAGS.prevalence,
                                     phenotype_scale=FLAGS.phenotype_scale, seed=FLAGS.seed)
        cohort = os.path.join(out, "cohort")
        df = synthetic.write_cohort(cohort, cfg)
        df = manifest.read_manifest(manifest.write_manifest(df, os.path.join(cohort,
                                                                             "manifest.csv")))
        src = f"synthetic cohort, {FLAGS.num_patients} patients, seed {FLAGS.seed}"
    if df["split"].isna().all():
        df = assign_splits(df, seed=FLAGS.seed)
    return df, src


def _select_rule():
    """The monitor's probe is fitted on every train2 label: an encoder chosen by it has seen
    them, which the label-efficiency study's few-label arms must not. There: the last epoch."""
    if FLAGS.label_efficiency and FLAGS.select_encoder == "monitor":
        print("--label_efficiency: the pretrained encoder is the last epoch's, not the one the "
              "monitor picks (its probe uses all train2 labels); the monitor still logs")
        return "last"
    return FLAGS.select_encoder


def main(argv):
    del argv
    from ecg_moco_tf.data import split_summary, write_manifest
    from ecg_moco_tf.evaluation.plots import plot_calibration, plot_roc
    from ecg_moco_tf.evaluation.report import LABELS, table2, write_report
    from ecg_moco_tf.training import distribute
    from ecg_moco_tf.training import experiments as X
    from ecg_moco_tf.training.finetune import FinetuneConfig
    from ecg_moco_tf.provenance import check_task_name
    from ecg_moco_tf.training.pretrain import (PretrainConfig, check_config,
                                               check_distribution, check_out_dir, pretrain)

    strategy = common.strategy_from_flags("batch_size", "pretrain_batch_size")   # first
    out = distribute.worker_dir(FLAGS.out, strategy)      # FLAGS.out on the chief
    chief = distribute.is_chief(strategy)
    check_task_name(FLAGS.task_name)
    needs_encoder = "proposed" in FLAGS.experiments or FLAGS.label_efficiency
    augment_overrides = common.augment_overrides_from_flags()
    if FLAGS.pretrained_encoder:
        from ecg_moco_tf.pretrained import encoder_path

        FLAGS.pretrained_encoder = encoder_path(FLAGS.pretrained_encoder)
    if needs_encoder and not FLAGS.pretrained_encoder:
        check_out_dir(os.path.join(out, "pretrain"), FLAGS.overwrite)      # before any work
    os.makedirs(out, exist_ok=True)
    verbose = 1 if sys.stdout.isatty() else 2
    enc_kwargs = common.encoder_kwargs()
    X.stage("1/5 data")
    df, source = _data(out)
    notes = [f"data: {source}; {len(df)} ECGs, {df['patient_id'].nunique()} patients"]
    n_all = len(df)
    df = common.readable_records(df, out)
    if len(df) < n_all:
        notes.append(f"{n_all - len(df)} unreadable records left out, listed in problems.csv")
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

    ft = FinetuneConfig(learning_rates=tuple(float(x) for x in FLAGS.learning_rates),
                        epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                        patience=FLAGS.patience, hidden_units=FLAGS.hidden_units,
                        class_weight=FLAGS.class_weight, dropout=FLAGS.dropout,
                        augment=FLAGS.augment, bn_momentum=FLAGS.bn_momentum,
                        weight_decay=FLAGS.weight_decay,
                        encoder_lr_multiplier=FLAGS.encoder_lr_multiplier,
                        linear_probe_epochs=FLAGS.linear_probe_epochs,
                        reestimate_bn=FLAGS.reestimate_bn,
                        min_steps_per_epoch=FLAGS.min_steps_per_epoch, cache=FLAGS.cache,
                        seed=FLAGS.seed, verbose=verbose, mixed_precision=FLAGS.mixed_precision,
                        jit_compile=FLAGS.jit_compile,
                        read_options=common.read_options_from_flags()).check()
    pt = PretrainConfig(epochs=FLAGS.pretrain_epochs, batch_size=FLAGS.pretrain_batch_size,
                        learning_rate=FLAGS.pretrain_learning_rate, queue_size=FLAGS.queue_size,
                        momentum=FLAGS.moco_momentum, temperature=FLAGS.temperature,
                        momentum_final=FLAGS.moco_momentum_final,
                        warmup_steps=FLAGS.pretrain_warmup_steps,
                        lr_schedule=FLAGS.pretrain_lr_schedule,
                        augmentations=tuple(FLAGS.augmentations),
                        augment_probability=FLAGS.augment_probability,
                        augment_overrides=augment_overrides,
                        cache=FLAGS.cache, seed=FLAGS.seed, verbose=verbose,
                        monitor_every=FLAGS.monitor_every, select=_select_rule(),
                        read_options=common.read_options_from_flags(),
                        sync_bn=FLAGS.sync_bn, mixed_precision=FLAGS.mixed_precision,
                        jit_compile=FLAGS.jit_compile)
    check_distribution(pt, strategy)
    for name in FLAGS.experiments:                # empty splits, bad settings: fail now
        X.experiment_view(df, name, require=("train", "valid", "test"))
    if needs_encoder and not FLAGS.pretrained_encoder:
        view = X.experiment_view(df, "proposed", require=("pretrain_train", "pretrain_valid"))
        check_config(pt, len(view["pretrain_train"]), len(view["pretrain_valid"]))
    encoder_path, monitor_png = FLAGS.pretrained_encoder, None
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
    preds, sweeps = {}, {}
    for i, name in enumerate(FLAGS.experiments):
        X.stage(f"3/5 experiment {i + 1}/{len(FLAGS.experiments)}: {name}")
        preds[name], sweeps[name] = X.run_experiment(
            df, name, out, ft, encoder_path if name == "proposed" else None, enc_kwargs,
            task_name=FLAGS.task_name, strategy=strategy)
    settings = {**X.experiments_settings(ft, pt), "encoder": enc_kwargs, "source": source,
                "strategy": distribute.describe(strategy)}
    summary, tests, figures = {}, {}, {}
    if monitor_png:
        figures["monitor"] = monitor_png
    if preds:
        X.stage("4/5 evaluation (patient bootstrap, DeLong)")
        summary, tests = X.summarize(preds, n_boot=FLAGS.n_boot, seed=FLAGS.seed)
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
        table = X.label_efficiency(df, encoder_path, out, [float(f) for f in FLAGS.le_fractions],
                                   [int(s) for s in FLAGS.le_seeds], ft, enc_kwargs,
                                   task_name=FLAGS.task_name, strategy=strategy)
        figures["label_efficiency"] = os.path.join(out, "label_efficiency.png")
        print(table.groupby(["fraction", "init"])["auc"].agg(["mean", "std", "count"]))
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
    X.save_results(out, summary, tests, sweeps, settings)
    if summary:
        path = write_report(out, splits_table, summary, tests, sweeps, figures,
                            {k: v for k, v in settings.items() if k != "experiments"}, notes,
                            explained)
        X.stage("done")
        print(table2(summary, tests))
        print(f"\nreport: {path}")


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

    lines = ["## Explanations (Grad-CAM on the test ECGs)", ""]
    for name, path, ref in (("classifier", os.path.join(out, "proposed", "classifier.keras"),
                             None), ("encoder", encoder_path, part("train2"))):
        res = explain_cohort(load_model(path), part("test"),
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
                             f"{f['deletion_area_random']:.3f}); {f['n_ecgs']} positives")
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
