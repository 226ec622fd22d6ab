"""Fine-tuning with the paper's learning-rate sweep; keep the lowest validation loss.

The design (why each step is as it is) is in docs/design.md, "Fine-tuning settings".
"""
from __future__ import annotations

import numbers
import os
import shutil
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from ..augment import build_augmenter
from ..data import pipeline
from ..data.records import ReadOptions
from ..models.batchnorm import batch_norms  # noqa: F401  (also imported from here)
from ..models.classifier import build_classifier
from ..models.clone import copy_model
from ..models.encoder import adapt_normalization, build_encoder
from . import distribute
from .callbacks import CSVLog, StopOnNaN

PAPER_LEARNING_RATES = (1e-4, 3e-5, 1e-5)
HEAD_LAYERS = ("head_dense", "head_dropout", "head_logit", "probability")
NO_DECAY = ("bias", "gamma", "beta")          # variable names AdamW leaves undecayed


def _is_rate(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass
class FinetuneConfig:
    """Fine-tuning settings. Each is a flag of ``ecg-moco finetune`` and ``reproduce`` with
    this default (the flags are made from these fields: ``cli.common.finetune_flag_table``)."""

    learning_rates: tuple = PAPER_LEARNING_RATES
    epochs: int = 50
    batch_size: int = 32
    patience: int = 5
    hidden_units: int = 64
    dropout: float = 0.0
    freeze_encoder: bool = False
    class_weight: str = "none"          # or "balanced"
    augment: bool = False
    bn_momentum: float = 0.9            # every batch norm of the encoder copy
    weight_decay: float = 0.0           # > 0: AdamW
    encoder_lr_multiplier: float = 1.0  # encoder learning rate / head learning rate
    linear_probe_epochs: int = 0        # LP-FT: head-only epochs before fine-tuning
    reestimate_bn: bool = False         # average BN statistics over train before validating
    min_steps_per_epoch: int = 0        # > 0: small training sets repeat within an epoch
    cache: bool = True
    seed: int = 0
    verbose: int = 2
    read_options: ReadOptions = ReadOptions()   # how records are read (e.g. drop_extra_leads)
    mixed_precision: str = "float32"    # or "mixed_float16" | "mixed_bfloat16"
    jit_compile: bool = False           # XLA-compile the train step (one replica only)

    def __post_init__(self):
        if _is_rate(self.learning_rates):               # one rate: a sweep of one
            self.learning_rates = (self.learning_rates,)

    def check(self):
        rates = self.learning_rates
        if (isinstance(rates, (str, bytes)) or not hasattr(rates, "__len__") or not len(rates)
                or not all(_is_rate(r) and r > 0 for r in rates)):
            raise ValueError(f"learning_rates must be one or more positive numbers, e.g. "
                             f"(1e-4, 3e-5); got {rates!r}")
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1), got {self.bn_momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.encoder_lr_multiplier < 0:
            raise ValueError("encoder_lr_multiplier must be >= 0, got "
                             f"{self.encoder_lr_multiplier}")
        if self.linear_probe_epochs < 0:
            raise ValueError(f"linear_probe_epochs must be >= 0, got {self.linear_probe_epochs}")
        if self.min_steps_per_epoch < 0:
            raise ValueError(f"min_steps_per_epoch must be >= 0, got {self.min_steps_per_epoch}")
        if self.linear_probe_epochs and self.freeze_encoder:
            raise ValueError("linear_probe_epochs needs an encoder that is fine-tuned after the "
                             "probe; with freeze_encoder the whole run is a linear probe")
        distribute.check_precision(self.mixed_precision)
        return self

    def check_strategy(self, strategy):
        """Batch size and XLA against the replica count (DistributeError)."""
        distribute.check_global_batch(self.batch_size, strategy)
        distribute.check_jit(self.jit_compile, strategy)
        return self


# settings written into every row of the sweep table (all of them are in results.json too)
SWEEP_SETTINGS = ("bn_momentum", "weight_decay", "encoder_lr_multiplier", "linear_probe_epochs",
                  "augment", "dropout", "reestimate_bn", "min_steps_per_epoch")


@dataclass
class FinetuneResult:
    model: keras.Model
    best_learning_rate: float
    sweep: pd.DataFrame                 # one row per learning rate
    histories: dict                     # learning rate -> fine-tuning history
    probe_histories: dict = field(default_factory=dict)   # learning rate -> probe history
    threshold: dict | None = None       # Youden's threshold on the validation ECGs
    valid_predictions: pd.DataFrame | None = None    # manifests: :func:`predict` on valid


def _class_weight(df, mode):
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError("class_weight must be 'none' or 'balanced'")
    y = df["label"].astype(int).to_numpy()
    n, pos = len(y), y.sum()
    return {0: n / (2 * (n - pos)), 1: n / (2 * pos)}


def _labelled(df, name):
    if df["label"].isna().any():
        raise ValueError(f"{name}: {int(df['label'].isna().sum())} ECGs have no label; "
                         "fine-tuning needs labels")
    if df["label"].nunique() < 2:
        raise ValueError(f"{name}: needs both classes, has only label {df['label'].iloc[0]}")
    return df


def set_bn_momentum(model, momentum):
    """Set the moving-statistics momentum of every batch norm of ``model`` (in place)."""
    for layer in batch_norms(model):
        layer.momentum = float(momentum)
    return model


def make_optimizer(learning_rate, weight_decay=0.0):
    """Adam, or AdamW with decoupled ``weight_decay`` (biases and BN gamma/beta not decayed)."""
    if weight_decay > 0:
        opt = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
        opt.exclude_from_weight_decay(var_names=list(NO_DECAY))
        return opt
    return keras.optimizers.Adam(learning_rate)


class TwoRateTrainer(keras.Model):
    """Trains a functional ``classifier`` with two optimizers: the compiled one for the head's
    variables, ``encoder_optimizer`` (None: not updated) for the encoder's.

    For ``fit``/``evaluate`` only: it shares the classifier's layers and variables, so after
    training the plain functional ``classifier`` holds the result (save and return that one).
    Each optimizer scales the loss for its own gradients (``LossScaleOptimizer`` under
    ``mixed_float16``); under ``tf.distribute`` the loss is Keras's per-replica share.
    """

    def __init__(self, classifier, encoder_optimizer=None, head_layers=HEAD_LAYERS):
        super().__init__(name=f"{classifier.name}_two_rate")
        self.classifier = classifier
        self.encoder_optimizer = encoder_optimizer
        self._head_layers = tuple(head_layers)
        if encoder_optimizer is not None:
            encoder_optimizer.build(self._split()[0])    # outside the traced train step

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def _split(self):
        head = {id(v) for layer in self.classifier.layers if layer.name in self._head_layers
                for v in layer.trainable_variables}
        variables = self.classifier.trainable_variables
        return ([v for v in variables if id(v) not in head],
                [v for v in variables if id(v) in head])

    def train_step(self, data):
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        encoder_vars, head_vars = self._split()
        encoder_opt = self.encoder_optimizer if encoder_vars else None
        with tf.GradientTape(persistent=encoder_opt is not None) as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                     training=True)
            head_loss = self.optimizer.scale_loss(loss)
            encoder_loss = encoder_opt.scale_loss(loss) if encoder_opt is not None else None
        self.optimizer.apply(tape.gradient(head_loss, head_vars), head_vars)
        if encoder_opt is not None:
            encoder_opt.apply(tape.gradient(encoder_loss, encoder_vars), encoder_vars)
        del tape
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        for metric in self.metrics:
            if metric.name == "loss":        # Keras's loss is this replica's share: undo it
                metric.update_state(loss * replicas, sample_weight=tf.shape(x)[0])
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def reestimate_batch_norm(model, batches):
    """Replace the moving statistics of ``model``'s trainable batch norms by their average over
    ``batches`` (signals, or (signal, label) pairs): one pass in training mode, the momentum of
    batch i set to i / (i + 1) (batch 0 overwrites, then a running mean). Returns the number
    of batches; the layers' momenta are restored afterwards."""
    layers = [layer for layer in batch_norms(model) if layer.trainable]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    n = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in layers:
                layer.momentum = n / (n + 1.0)
            model(x, training=True)                # eager: the momentum is read on each call
            n += 1
    finally:
        for layer, m in zip(layers, momenta):
            layer.momentum = m
    return n


#: beside classifier.keras: the records and patients it was fine-tuned and validated on
#: (``export`` refuses a held-out split that shares any of them)
TRAINED_ON = "fine_tuning_records.csv"


def _clear_earlier_run(out_dir):
    """Remove an earlier fine-tuning run's files from ``out_dir`` (its per-rate logs would
    otherwise sit beside the new sweep table and classifier)."""
    import glob

    old = glob.glob(os.path.join(out_dir, "finetune_lr*.csv")) + [
        p for p in (os.path.join(out_dir, n) for n in ("lr_sweep.csv", "classifier.keras",
                                                      "tensorboard", "provenance.json",
                                                      TRAINED_ON))
        if os.path.exists(p)]
    if old:
        print(f"replacing the earlier fine-tuning run in {out_dir} ({len(old)} files)")
        for p in old:
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)


def finetune(train, valid=None, encoder=None, cfg=FinetuneConfig(), out_dir=None,
             encoder_kwargs=None, strategy=None, validation_data=None, task_name="positive",
             **settings):
    """Fine-tune from ``encoder``: a Keras encoder, a shipped name (``"ptbxl-pool"``) or an
    ``encoder.keras`` path, or None (random init of ``build_encoder(**encoder_kwargs)``).

    The data, either way:

    - manifests: ``finetune(train_df, valid_df, ...)`` (records read from disk);
    - arrays, as ``keras.Model.fit`` takes them: ``finetune(x_train, y_train,
      validation_data=(x_valid, y_valid), encoder="ptbxl-pool", epochs=10)``, with ``x`` of
      shape (ECGs, 12, 5000) in millivolts at 500 Hz (leads in ``LEADS`` order) and ``y`` 0/1.

    The result carries ``threshold`` (Youden's on the validation ECGs; from manifests also
    ``valid_predictions``, the table it was chosen on), and with
    ``out_dir`` the classifier gets its ``provenance.json`` (``task_name``, the encoder, that
    threshold), which ``ecg-moco predict`` and ``export`` use.
    ``settings``: :class:`FinetuneConfig` fields that override ``cfg`` (``epochs=10``). The
    given encoder is never modified (each learning rate works on a copy). A random encoder
    gets its normalization adapted on the training ECGs; a pretrained one keeps its own.
    ``strategy``: a ``tf.distribute.Strategy`` or a name of :data:`.distribute.STRATEGIES`
    (default: one device); on a multi-worker cluster only the chief writes to ``out_dir``.
    """
    from ..provenance import check_task_name, write_provenance

    cfg = _with_settings(cfg, settings)
    cfg.check()
    check_task_name(task_name)
    signals = None
    if not isinstance(train, pd.DataFrame):
        (train, valid), signals = _array_data(train, valid, validation_data, cfg.read_options)
    elif validation_data is not None or valid is None:
        raise ValueError("with a training manifest, give the validation manifest as valid "
                         "(validation_data=(x, y) goes with arrays: finetune(x_train, y_train, "
                         "validation_data=(x_valid, y_valid)))")
    encoder_file = None
    if isinstance(encoder, (str, os.PathLike)):
        from ..pretrained import encoder_path
        from .experiments import load_encoder

        encoder_file = encoder_path(os.fspath(encoder))
        encoder = load_encoder(encoder_file)
        if signals is None:                     # records: ones the encoder saw are named
            from ..provenance import warn_if_seen

            warn_if_seen(encoder_file, pd.concat([train, valid]), "train/valid",
                         cfg.read_options)
    strategy = distribute.resolve(strategy)
    cfg.check_strategy(strategy)
    _labelled(train, "train" if signals is None else "y_train")
    _labelled(valid, "valid" if signals is None else "validation_data[1]")
    several = distribute.replicas(strategy) > 1
    distribute.check_last_batch(len(train), cfg.batch_size, strategy, "train",
                                last_dropped=True)
    distribute.check_last_batch(len(valid), cfg.batch_size, strategy, "valid")
    out_dir = out_dir and distribute.worker_dir(out_dir, strategy)
    if out_dir:
        _clear_earlier_run(out_dir)
    # models, optimizers and metrics in the strategy's scope and the run's precision
    with distribute.precision(cfg.mixed_precision), strategy.scope():
        res = _finetune(train, valid, encoder, cfg, out_dir, encoder_kwargs, several, signals)
    if several or cfg.mixed_precision != "float32":     # a plain one-device float32 model
        res.model = copy_model(res.model, dtype="float32")
    from .experiments import decision_threshold

    if signals is not None:
        p = res.model.predict(signals[1], batch_size=cfg.batch_size, verbose=0).ravel()
        res.threshold = decision_threshold(valid.assign(probability=p))
        if res.threshold:
            res.threshold["chosen_on"] = "validation_data"
    else:
        res.valid_predictions = predict(res.model, valid, cfg.batch_size, cfg.read_options)
        res.threshold = decision_threshold(res.valid_predictions)
    if out_dir:
        res.sweep.to_csv(os.path.join(out_dir, "lr_sweep.csv"), index=False)
        res.model.save(os.path.join(out_dir, "classifier.keras"))
        if signals is None:
            pd.concat([train.assign(used_as="train"), valid.assign(used_as="valid")])[
                ["record", "patient_id", "used_as"]].to_csv(os.path.join(out_dir, TRAINED_ON),
                                                            index=False)
        write_provenance(out_dir, "proposed" if encoder is not None else
                         "baseline_unpretrained", task_name, encoder_file,
                         threshold=res.threshold)
    return res


def _with_settings(cfg, settings):
    from dataclasses import fields, replace

    names = [f.name for f in fields(FinetuneConfig)]
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise TypeError(f"finetune() got unknown setting(s) {', '.join(unknown)}: the settings "
                        f"are FinetuneConfig's fields ({', '.join(names)})")
    return replace(cfg, **settings) if settings else cfg


def _array_data(x_train, y_train, validation_data, options):
    """(train, valid) tables of labels beside the checked (x_train, x_valid) float32 arrays:
    a ``ValueError`` naming the argument and the ECG for a wrong shape, a non-finite sample,
    an implausible amplitude (as :func:`read_record` checks records) or a label that is not
    0/1."""
    from ..data.records import RecordError, check_amplitude

    if validation_data is None or len(validation_data) != 2:
        raise ValueError("arrays need validation_data=(x_valid, y_valid): fine-tuning keeps "
                         "the learning rate and epoch of the lowest validation loss")
    tables, signals = [], []
    for (x, y), (xn, yn) in (((x_train, y_train), ("x_train", "y_train")),
                             (validation_data, ("validation_data[0]", "validation_data[1]"))):
        x = np.asarray(x, dtype=np.float32)
        want = (12, options.num_samples)
        if x.ndim != 3 or x.shape[1:] != want:
            flip = x.ndim == 3 and x.shape[1:] == want[::-1]
            other = x.ndim == 3 and 12 in x.shape[1:] and not flip
            raise ValueError(f"{xn} has shape {x.shape}; ECGs must be (ECGs, {want[0]}, "
                             f"{want[1]}): 12 leads of {want[1]} samples at {options.fs} Hz"
                             + (f" (leads first: pass {xn}.transpose(0, 2, 1))" if flip else "")
                             + (" (another length or sampling rate: bring each ECG to it with "
                                "ecg_moco_tf.data.records.standardize(ecg, fs, leads), which "
                                "resamples, crops the central 10 s or zero-pads)" if other
                                else ""))
        bad = np.flatnonzero(~np.isfinite(x).all(axis=(1, 2)))
        if len(bad):
            raise ValueError(f"{xn}[{bad[0]}] (and {len(bad) - 1} more) holds NaN or inf "
                             "samples: fill or drop those ECGs")
        for i, ecg in enumerate(x):
            try:
                check_amplitude(ecg.T, options.fs, f"{xn}[{i}]", options)
            except RecordError as e:
                raise ValueError(f"{xn}[{i}]: {e.problem} -> give the ECGs in millivolts, or "
                                 "set read_options=ReadOptions(check_amplitude=False) to use "
                                 "them as they are") from None
        y = pd.to_numeric(pd.Series(np.asarray(y).ravel()), errors="coerce")
        if len(y) != len(x):
            raise ValueError(f"{yn} has {len(y)} labels for the {len(x)} ECGs of {xn}")
        if not y.isin([0, 1]).all():
            raise ValueError(f"{yn} must be 0/1; found {sorted(set(y[~y.isin([0, 1])]))[:5]}")
        names = [f"{xn}[{i}]" for i in range(len(x))]
        tables.append(pd.DataFrame({"record": names, "patient_id": names, "label": y}))
        signals.append(x)
    return tuple(tables), tuple(signals)


def _finetune(train_df, valid_df, encoder, cfg, out_dir, encoder_kwargs, several, signals):
    mixed = cfg.mixed_precision != "float32"
    keras.utils.set_random_seed(cfg.seed)
    if signals is not None:                             # arrays: already in memory
        train, valid = (pipeline.array_dataset(x, d, shuffle=k == 0, seed=cfg.seed)
                        for k, (x, d) in enumerate(zip(signals, (train_df, valid_df))))
    else:
        cache = "" if cfg.cache else None
        # several replicas: fill the memory cache first (see pipeline.manifest_dataset)
        fill = several and cache is not None
        train = pipeline.manifest_dataset(train_df, shuffle=True, seed=cfg.seed, cache=cache,
                                          fill_cache=fill, options=cfg.read_options)
        valid = pipeline.manifest_dataset(valid_df, cache=cache, fill_cache=fill,
                                          options=cfg.read_options)
    if encoder is None:
        encoder = build_encoder(**(encoder_kwargs or {}))
        adapt_normalization(encoder, train.batch(cfg.batch_size))
    aug = build_augmenter(seed=cfg.seed) if cfg.augment else None
    train_b = pipeline.supervised(train, cfg.batch_size, augmenter=aug, seed=cfg.seed)
    if several:              # a batch smaller than the replica count would leave one empty
        replicas = distribute.replicas(tf.distribute.get_strategy())
        batches = len(train_df) // cfg.batch_size + (len(train_df) % cfg.batch_size >= replicas)
        train_b = train_b.filter(lambda x, y: tf.shape(x)[0] >= replicas).apply(
            tf.data.experimental.assert_cardinality(batches))
    train_b = distribute.shard_policy(train_b)
    valid_b = distribute.shard_policy(pipeline.supervised(valid, cfg.batch_size))
    steps = None                # one pass over train2 per epoch, unless that is too few steps
    if -(-len(train_df) // cfg.batch_size) < cfg.min_steps_per_epoch:
        steps, train_b = cfg.min_steps_per_epoch, train_b.repeat()
    class_weight = _class_weight(train_df, cfg.class_weight)
    probe = cfg.linear_probe_epochs
    rows, histories, probe_histories, best = [], {}, {}, None
    for lr in cfg.learning_rates:
        keras.utils.set_random_seed(cfg.seed)             # same head init for every rate
        enc = set_bn_momentum(copy_model(encoder, dtype=cfg.mixed_precision if mixed else None),
                              cfg.bn_momentum)
        model = build_classifier(enc, cfg.hidden_units, cfg.dropout,
                                 cfg.freeze_encoder or probe > 0)
        metrics = [keras.metrics.AUC(name="auc")]
        nan = StopOnNaN(f"Lower the learning rate (now {lr:g}) or check the input with "
                        "`ecg-moco validate`.")
        csv = board = None
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            csv = os.path.join(out_dir, f"finetune_lr{lr:g}.csv")
            board = keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard",
                                                             f"lr{lr:g}"))
        if cfg.verbose:
            print(f"fine-tuning with learning rate {lr:g}")
        if probe:          # LP-FT, phase 1: the head alone (through a view of the same layers,
            # so that the classifier itself is compiled only for fine-tuning)
            prober = keras.Model(model.input, model.output, name=model.name)
            prober.compile(optimizer=make_optimizer(lr, cfg.weight_decay),
                           loss="binary_crossentropy", metrics=metrics,
                           jit_compile=cfg.jit_compile)
            callbacks = [nan] + ([CSVLog(csv), board] if csv else [])
            probe_histories[lr] = prober.fit(
                train_b, validation_data=valid_b, epochs=probe, class_weight=class_weight,
                steps_per_epoch=steps, callbacks=callbacks, verbose=cfg.verbose,
                shuffle=False).history
            nan.check()
            for layer in enc.layers:              # phase 2: fine-tune everything
                layer.trainable = True
            metrics = [keras.metrics.AUC(name="auc")]
        trainer = model
        if cfg.encoder_lr_multiplier != 1.0 and not cfg.freeze_encoder:
            enc_opt = (make_optimizer(lr * cfg.encoder_lr_multiplier, cfg.weight_decay)
                       if cfg.encoder_lr_multiplier > 0 else None)
            if enc_opt is not None and cfg.mixed_precision == "mixed_float16":
                enc_opt = keras.optimizers.LossScaleOptimizer(enc_opt)   # compile wraps the other
            trainer = TwoRateTrainer(model, enc_opt)
        trainer.compile(optimizer=make_optimizer(lr, cfg.weight_decay),
                        loss="binary_crossentropy", metrics=metrics, jit_compile=cfg.jit_compile)
        callbacks = [keras.callbacks.EarlyStopping("val_loss", patience=cfg.patience,
                                                   restore_best_weights=True), nan]
        if csv:
            callbacks += [CSVLog(csv, append=probe > 0), board]
        hist = trainer.fit(train_b, validation_data=valid_b, initial_epoch=probe,
                           epochs=probe + cfg.epochs, class_weight=class_weight,
                           steps_per_epoch=steps, callbacks=callbacks, verbose=cfg.verbose,
                           shuffle=False).history
        nan.check()
        val = np.asarray(hist.get("val_loss", []), dtype=float)
        row = {"learning_rate": lr}
        if len(val):
            row.update(best_val_loss=float(val.min()),       # epochs as in the CSV log
                       best_epoch=probe + int(val.argmin()) + 1,
                       epochs_run=len(val),
                       best_val_auc=float(np.asarray(hist["val_auc"])[val.argmin()]))
        else:
            row.update(best_val_loss=np.nan, best_epoch=0, epochs_run=0, best_val_auc=np.nan)
        reestimate = cfg.reestimate_bn and not cfg.freeze_encoder
        if reestimate:
            reestimate_batch_norm(model, pipeline.supervised(train, cfg.batch_size))
            row.update(val_loss_before_bn_reestimate=row["best_val_loss"],
                       val_auc_before_bn_reestimate=row["best_val_auc"])
        if reestimate or not len(val):            # validate the model that is kept
            ev = trainer.evaluate(valid_b, verbose=0, return_dict=True)
            row.update(best_val_loss=float(ev["loss"]), best_val_auc=float(ev["auc"]))
        row.update({k: getattr(cfg, k) for k in SWEEP_SETTINGS})
        rows.append(row)
        histories[lr] = hist
        if best is None or row["best_val_loss"] < best[0]:
            best = (row["best_val_loss"], lr, model)
    return FinetuneResult(best[2], best[1], pd.DataFrame(rows), histories, probe_histories)


def predict(model, df, batch_size=64, options=ReadOptions()):
    """Probabilities for every ECG of a manifest, as a DataFrame beside its ids, labels and
    (where the manifest has one) split."""
    ds = pipeline.supervised(pipeline.manifest_dataset(df, options=options), batch_size)
    prob = model.predict(ds.map(lambda x, y: x), verbose=0).ravel()
    out = pd.DataFrame({"record": df["record"].to_numpy(),
                        "patient_id": df["patient_id"].to_numpy(),
                        "label": df["label"].to_numpy(), "probability": prob})
    if "split" in df:
        out["split"] = df["split"].to_numpy()
    return out
