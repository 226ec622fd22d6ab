"""Fine-tune and test one experiment of the paper's Table 3 on a manifest with splits.

Example: ecg-moco finetune --manifest=runs/demo/manifest_with_splits.csv \
             --flagfile=flags/proposed.flags --encoder=runs/demo/pretrain/encoder.keras
The learning-rate sweep keeps the model with the lowest validation loss; the test AUC is
printed with its 95 % patient-bootstrap CI. Writes classifier.keras, lr_sweep.csv,
test_predictions.csv (column p_<task_name>), metrics.json and provenance.json (task, experiment,
pretrained encoder; `ecg-moco export` puts it in the model card) to --out. --encoder is for
--experiment=proposed only (the baselines start from random weights). Every record used is read
once before training: an unreadable one stops the command (--on_error=raise) or is left out,
listed in <out>/problems.csv (--on_error=skip).
--strategy, --mixed_precision, --jit_compile: README "Distributed training" (--batch_size is
the global batch).
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
flags.DEFINE_enum("experiment", "proposed", ["proposed", "baseline_unpretrained",
                                             "baseline_full_labels"], "Which Table 3 row.")
flags.DEFINE_string("encoder", None, "Pretrained encoder: a .keras file or a shipped name "
                    "(ptbxl-pool); required for 'proposed'.")
flags.DEFINE_string("out", "runs/finetune", "Output folder (created).")
flags.DEFINE_list("learning_rates", ["1e-4", "3e-5", "1e-5"], "Learning-rate sweep (Adam).")
flags.DEFINE_integer("epochs", 50, "Maximum epochs per learning rate.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("patience", 5, "Early-stopping patience on validation loss.")
flags.DEFINE_integer("hidden_units", 64, "Width of the hidden dense layer of the head.")
flags.DEFINE_float("dropout", 0.0, "Dropout before the output layer.")
flags.DEFINE_bool("freeze_encoder", False, "Linear-probe mode: train the head only.")
flags.DEFINE_enum("class_weight", "none", ["none", "balanced"], "Class weighting of the loss.")
flags.DEFINE_bool("augment", False, "Augment training ECGs (the paper's five transforms).")
flags.DEFINE_float("bn_momentum", 0.9, "Momentum of the encoder's batch-norm statistics during "
                   "fine-tuning (set on the copy; Keras default 0.99 = the paper protocol).")
flags.DEFINE_float("weight_decay", 0.0, "> 0: AdamW with this decoupled weight decay.")
flags.DEFINE_float("encoder_lr_multiplier", 1.0, "Encoder learning rate relative to the head's.")
flags.DEFINE_integer("linear_probe_epochs", 0, "LP-FT: head-only epochs (encoder frozen) before "
                     "fine-tuning.")
flags.DEFINE_bool("reestimate_bn", False, "Re-estimate batch-norm statistics on the training "
                  "ECGs after training, before validating and saving.")
flags.DEFINE_integer("min_steps_per_epoch", 0, "repeat a training set smaller than this "
                     "many batches so every epoch has this many steps (0: one pass per epoch).")
flags.DEFINE_bool("cache", True, "Keep decoded ECGs in memory.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("task_name", "positive", "What the classifier detects, e.g. MI or LVSD: "
                    "test_predictions.csv's column p_<task>, provenance.json, the model card.")


def main(argv):
    del argv
    from ecg_moco_tf.data import read_manifest
    from ecg_moco_tf.models import load_model
    from ecg_moco_tf.evaluation import evaluate
    from ecg_moco_tf.pretrained import encoder_path
    from ecg_moco_tf.provenance import check_task_name, write_provenance
    from ecg_moco_tf.training import distribute
    from ecg_moco_tf.training.experiments import (check_encoder, experiment_view,
                                                  save_predictions)
    from ecg_moco_tf.training.finetune import FinetuneConfig, finetune, predict

    check_encoder(FLAGS.experiment, FLAGS.encoder)
    check_task_name(FLAGS.task_name)
    strategy = common.strategy_from_flags("batch_size")  # first: before other TensorFlow work
    encoder_file = encoder_path(FLAGS.encoder) if FLAGS.encoder else None
    parts = ("train", "valid", "test")
    df = read_manifest(FLAGS.manifest)
    view = experiment_view(df, FLAGS.experiment, require=parts)
    encoder = load_model(encoder_file) if encoder_file else None
    cfg = FinetuneConfig(learning_rates=tuple(float(x) for x in FLAGS.learning_rates),
                         epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                         patience=FLAGS.patience, hidden_units=FLAGS.hidden_units,
                         dropout=FLAGS.dropout, freeze_encoder=FLAGS.freeze_encoder,
                         class_weight=FLAGS.class_weight, augment=FLAGS.augment,
                         bn_momentum=FLAGS.bn_momentum, weight_decay=FLAGS.weight_decay,
                         encoder_lr_multiplier=FLAGS.encoder_lr_multiplier,
                         linear_probe_epochs=FLAGS.linear_probe_epochs,
                         reestimate_bn=FLAGS.reestimate_bn,
                         min_steps_per_epoch=FLAGS.min_steps_per_epoch, cache=FLAGS.cache,
                         seed=FLAGS.seed, mixed_precision=FLAGS.mixed_precision,
                         jit_compile=FLAGS.jit_compile,
                         read_options=common.read_options_from_flags()).check()
    used = df.loc[df.index.isin(set().union(*(view[k].index for k in parts)))]
    view = experiment_view(common.readable_records(used, FLAGS.out), FLAGS.experiment,
                           require=parts)
    enc_kwargs = common.encoder_kwargs()
    out = distribute.worker_dir(FLAGS.out, strategy)    # FLAGS.out on the chief
    res = finetune(view["train"], view["valid"], encoder, cfg, out, enc_kwargs, strategy)
    pred = predict(res.model, view["test"], options=cfg.read_options)
    save_predictions(pred, os.path.join(out, "test_predictions.csv"), FLAGS.task_name)
    write_provenance(out, FLAGS.experiment, FLAGS.task_name, encoder_file)
    m = evaluate(pred["label"].astype(int), pred["probability"], pred["patient_id"],
                 seed=FLAGS.seed)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(m, f, indent=1)
    print(res.sweep.to_string(index=False))
    print(f"{FLAGS.experiment} ({FLAGS.task_name}): test AUC {m['auc']:.4f} "
          f"[{m['auc_ci_low']:.4f}, {m['auc_ci_high']:.4f}] "
          f"(best learning rate {res.best_learning_rate:g})")
