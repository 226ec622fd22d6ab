"""MoCo pretraining on the unlabelled pool (train1 / valid1).

``pretrain`` adapts the encoder's normalization on train1, fits MoCo with Adam, validates on
valid1 every epoch (the same two fixed views of each ECG every epoch) and, given labelled
monitor splits (train2 -> valid2), runs the representation monitor (``training.monitor``: kNN
and logistic-probe AUC of the frozen features, alignment and uniformity) every
``monitor_every`` epochs. It saves the query encoder chosen by ``select``: the highest probe
AUC ("monitor"), the last epoch's ("last", also the fallback when the monitor cannot run), or
the lowest validation loss ("val_loss"; not comparable across epochs, as the loss depends on
the queue). Logs: CSV
(``pretrain_log.csv``) and TensorBoard (``tensorboard/``). ``BackupAndRestore``
(``backup/``) lets a killed run resume at its last finished epoch, with its queue, pointer,
key encoder and optimizer state: re-running into the same folder resumes only while that
unfinished backup exists. A folder that holds a finished run is refused (``FileExistsError``)
unless ``overwrite=True`` (``--overwrite``), which deletes the earlier run's outputs (and any
backup) and starts fresh.

Distributed (``strategy=``, :mod:`.distribute`): the encoder is copied, MoCo built and
compiled inside ``strategy.scope()``; ``batch_size`` is the global batch (``batch_size / R``
per replica). The pretraining ECGs are a manifest (DATA auto-sharding between workers) or
TFRecord shards from ``ecg-moco convert`` (FILE sharding: each worker reads its own files,
the stream repeats and an epoch is ``N // batch_size`` steps). ``mixed_precision``
builds everything under that Keras dtype policy; ``sync_bn`` uses synchronized batch norms
(global-batch statistics; shuffle-BN is then off); ``jit_compile``: XLA (one replica). The
saved ``encoder.keras`` is always a float32 copy with ordinary (fused) batch norms.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field

import keras

from .. import provenance
from ..augment import build_augmenter
from ..data import pipeline
from ..data.records import ReadOptions
from ..models.clone import copy_model
from ..models.encoder import adapt_normalization, build_encoder
from ..models.moco import MoCo
from . import distribute
from .callbacks import CSVLog, SaveBest, StopOnNaN
from .monitor import build_monitor


@dataclass
class PretrainConfig:
    """Pretraining settings. Each is a flag of ``ecg-moco pretrain`` and ``reproduce`` with
    this default (the flags are made from these fields: ``cli.common.pretrain_flag_table``)."""

    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    queue_size: int = 4096
    momentum: float = 0.999
    temperature: float = 0.2
    version: int = 2
    symmetric: bool = False
    shuffle_bn_splits: int = 2
    augmentations: tuple = ()          # empty: the paper's five
    augment_probability: float = 0.5
    augment_overrides: dict = field(default_factory=dict)   # class name -> constructor kwargs
    warmup_steps: int = 0              # linear LR warm-up from 0 (optimizer steps)
    lr_schedule: str = "constant"      # after warm-up: "constant" | "cosine" (decay to 0)
    momentum_final: float | None = None   # key momentum: cosine momentum -> this over the run
    cache: bool = True                 # keep decoded ECGs in memory (small data sets)
    seed: int = 0
    verbose: int = 2
    monitor_every: int = 1             # representation monitor every N epochs (0: off)
    select: str = "monitor"            # saved encoder: "monitor" | "last" | "val_loss"
    read_options: ReadOptions = ReadOptions()   # how records are read (e.g. drop_extra_leads)
    sync_bn: bool = False              # synchronized BN across replicas instead of shuffle-BN
    mixed_precision: str = "float32"   # or "mixed_float16" | "mixed_bfloat16"
    jit_compile: bool = False          # XLA-compile the train step (one replica only)


SELECT = ("monitor", "last", "val_loss")
_SELECT_KEY = {"monitor": "monitor_probe_auc", "last": None, "val_loss": "val_loss"}


def _number(x):
    return None if x is None else float(x)


LR_SCHEDULES = ("constant", "cosine")


def total_steps(cfg, num_train):
    """Optimizer steps of the whole run: epochs x (``num_train // batch_size``, whole batches)."""
    return cfg.epochs * (num_train // cfg.batch_size)


def learning_rate(cfg, steps):
    """Adam's learning rate for a run of ``steps`` optimizer steps: ``cfg.learning_rate``
    (constant, no warm-up), or a Keras ``CosineDecay`` (serializable; a function of
    ``optimizer.iterations``, so ``BackupAndRestore`` resumes it): linear warm-up from 0 over
    ``warmup_steps``, then constant (``lr_schedule="constant"``: ``alpha=1``) or a cosine decay
    to 0 at the last step (``"cosine"``)."""
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={cfg.lr_schedule!r}: choose from {LR_SCHEDULES}")
    if cfg.warmup_steps < 0:
        raise ValueError(f"warmup_steps={cfg.warmup_steps} must be >= 0")
    if cfg.lr_schedule == "constant" and not cfg.warmup_steps:
        return cfg.learning_rate
    alpha = 1.0 if cfg.lr_schedule == "constant" else 0.0
    decay = max(1, steps - cfg.warmup_steps)
    if not cfg.warmup_steps:
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(0.0, decay, alpha=alpha,
                                                  warmup_target=cfg.learning_rate,
                                                  warmup_steps=cfg.warmup_steps)


def _augmenter(cfg):
    return build_augmenter(cfg.augmentations or None, probability=cfg.augment_probability,
                           seed=cfg.seed, **(cfg.augment_overrides or {}))


def check_queue_size(queue_size, num_train, batch_size):
    """Refuse a queue at least as large as the data (an ECG would be its own negative), warn
    above half of it."""
    if batch_size > num_train:
        raise ValueError(f"batch_size {batch_size} is larger than the {num_train} pretraining "
                         "ECGs; lower batch_size")
    if queue_size >= num_train:
        raise ValueError(
            f"queue_size K={queue_size} >= {num_train} pretraining ECGs: the queue would hold "
            f"earlier keys of the same ECGs as negatives. Use K <= {num_train // 2} "
            "(queue_size), or more pretraining data.")
    if queue_size > num_train // 2:
        warnings.warn(f"queue_size K={queue_size} is more than half of the {num_train} "
                      "pretraining ECGs; some negatives will be older keys of the same ECG.")


OUTPUTS = ("encoder.keras", "moco.keras", "pretrain_log.csv", "pretrain_config.json",
           "tensorboard")


def check_out_dir(out_dir, overwrite=False):
    """Raise ``FileExistsError`` if ``out_dir`` holds a finished run (any of ``OUTPUTS`` and no
    ``backup/`` to resume) and ``overwrite`` is off. Changes nothing on disk."""
    found = [n for n in OUTPUTS if os.path.exists(os.path.join(out_dir, n))]
    if found and not overwrite and not os.path.isdir(os.path.join(out_dir, "backup")):
        what = ("a finished pretraining run" if "pretrain_config.json" in found else
                "an unfinished pretraining run that cannot be resumed (stopped before its "
                "first epoch ended, or by a NaN loss)")
        raise FileExistsError(
            f"{out_dir} holds {what} ({', '.join(found)}) and no backup/ to resume: set "
            "overwrite (--overwrite) to replace it, or choose another output folder")


def _prepare_out_dir(out_dir, overwrite, epochs):
    """Resume (True) from an unfinished ``backup/``, or start fresh (False): refuse a finished
    run, or with ``overwrite`` delete its outputs and any backup (nothing else)."""
    check_out_dir(out_dir, overwrite)
    backup = os.path.join(out_dir, "backup")
    if os.path.isdir(backup) and not overwrite:
        try:
            with open(os.path.join(backup, "training_metadata.json")) as f:
                where = f" (epoch {json.load(f)['epoch'] + 1} of {epochs})"
        except (OSError, ValueError, KeyError):
            where = ""
        print(f"resuming the unfinished run in {backup}{where}")
        return True
    if os.path.isdir(backup):
        print(f"discarding the unfinished run in {backup} (--overwrite)")
        shutil.rmtree(backup)
    found = [p for p in (os.path.join(out_dir, n) for n in OUTPUTS) if os.path.exists(p)]
    if found:                            # only with overwrite: check_out_dir refused otherwise
        print(f"replacing the earlier run in {out_dir} (--overwrite)")
    for path in found:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return False


def _is_shards(data):
    return isinstance(data, (str, list, tuple))


def _size(data):
    """Number of ECGs of a manifest, or of TFRecord shards (counted by reading them)."""
    return pipeline.count_tfrecords(data) if _is_shards(data) else len(data)


def _datasets(train_df, valid_df, cfg, strategy, fill_cache=False):
    """(raw train, two-view train, two-view valid, augmenter).

    Manifests: DATA auto-sharding between workers (each runs the pipeline and keeps its
    share). TFRecord shards (train): FILE sharding, one input pipeline per worker
    (``strategy.distribute_datasets_from_function``: worker i reads files i, i + n, ...,
    batches per replica, draws its own augmentations); tf.data's FILE auto-shard policy
    cannot do it, as the seeded augmentation adds a non-file source
    (``tf.data.Dataset.random``). The stream repeats: an epoch is ``N // batch_size`` steps.
    Valid shards: DATA (every worker the same batches). ``fill_cache``: read the manifests'
    records into the memory cache before training (several replicas, see
    :func:`~ecg_moco_tf.data.pipeline.manifest_dataset`)."""
    aug = _augmenter(cfg)
    cache = "" if cfg.cache else None
    fill_cache = fill_cache and cfg.cache
    if _is_shards(train_df):
        files = pipeline.tfrecord_files(train_df)
        train = pipeline.tfrecord_dataset(files)

        def worker_views(ctx):
            i, n = ctx.input_pipeline_id, ctx.num_input_pipelines
            mine = pipeline.tfrecord_dataset(files[i::n], shuffle=True, seed=cfg.seed + i)
            return pipeline.two_view(mine.repeat(), aug,
                                     ctx.get_per_replica_batch_size(cfg.batch_size),
                                     seed=cfg.seed + 1000 * i)

        views = strategy.distribute_datasets_from_function(worker_views)
    else:
        train = pipeline.manifest_dataset(train_df, shuffle=True, seed=cfg.seed, cache=cache,
                                          fill_cache=fill_cache, options=cfg.read_options)
        views = distribute.shard_policy(pipeline.two_view(train, aug, cfg.batch_size,
                                                          seed=cfg.seed))
    valid = (pipeline.tfrecord_dataset(valid_df) if _is_shards(valid_df) else
             pipeline.manifest_dataset(valid_df, cache=cache, fill_cache=fill_cache,
                                       options=cfg.read_options))
    valid = pipeline.two_view(valid, aug, cfg.batch_size, seed=cfg.seed + 1, fixed=True)
    return train, views, distribute.shard_policy(valid), aug


def check_distribution(cfg, strategy):
    """Batch, precision, shuffle-BN and XLA settings against the replica count (a
    ``ValueError`` saying what to set); returns the shuffle-BN groups MoCo gets (1 with
    ``sync_bn``)."""
    n = distribute.replicas(strategy)
    distribute.check_global_batch(cfg.batch_size, strategy)
    distribute.check_precision(cfg.mixed_precision)
    distribute.check_jit(cfg.jit_compile, strategy)
    g = 1 if cfg.sync_bn else cfg.shuffle_bn_splits
    if n > 1 and g > 1 and cfg.batch_size // n < 2:
        raise distribute.DistributeError(
            f"cross-replica shuffle-BN needs at least 2 ECGs per replica: raise batch_size "
            f"to {2 * n} or more ({n} replicas), or set shuffle_bn_splits=1")
    if n == 1 and g > 1 and (cfg.batch_size % g or cfg.batch_size // g < 2):
        raise ValueError(f"batch_size={cfg.batch_size} must be a multiple of "
                         f"shuffle_bn_splits={g} with at least 2 ECGs per group")
    return g


def _portable(encoder, cfg, strategy):
    """The encoder to save and monitor: float32, ordinary batch norms, on one device (a copy
    when it was trained in mixed precision, with sync BN or on several replicas: the monitor
    then predicts locally on every worker, without collectives or split batches)."""
    if (cfg.mixed_precision == "float32" and not cfg.sync_bn
            and distribute.replicas(strategy) == 1):
        return encoder
    return copy_model(encoder, dtype="float32", sync_bn=False)


def check_config(cfg, num_train, num_valid):
    """Check ``cfg`` against the numbers of train1 / valid1 ECGs before any work: a
    ``ValueError`` naming the flag to change. Returns (Adam's learning rate, total steps).
    Shuffle-BN groups against the batch and the replicas: :func:`check_distribution`."""
    for n, split in ((num_train, "train1"), (num_valid, "valid1")):
        if not n:
            raise ValueError(f"no pretraining ECGs in {split}: give the manifest splits "
                             "with `ecg-moco split --manifest=...` (it writes <name>_splits.csv) or a 'split' column")
    check_queue_size(cfg.queue_size, num_train, cfg.batch_size)
    if cfg.select not in SELECT:
        raise ValueError(f"select={cfg.select!r}: choose from {SELECT}")
    if num_valid < cfg.batch_size:
        raise ValueError(f"valid1 has {num_valid} ECGs, fewer than one batch of "
                         f"{cfg.batch_size}; lower batch_size")
    steps = total_steps(cfg, num_train)
    lr = learning_rate(cfg, steps)                    # checks lr_schedule and warmup_steps
    _augmenter(cfg)                                   # checks names and overrides
    return lr, steps


def pretrain(train_df, valid_df, out_dir, cfg=PretrainConfig(), encoder=None,
             extra_callbacks=(), overwrite=False, monitor_train_df=None, monitor_valid_df=None,
             strategy=None, base_encoder=None, fit_normalization=True):
    """Pretrain ``encoder`` (default: the paper's) with MoCo; returns (moco, history dict).

    ``base_encoder``: the path of a pretrained encoder that ``encoder`` was loaded from
    (continued pretraining): its provenance and pretraining records are carried into this
    run's (``initialized_from``; its records join ``pretrain_records.csv``, source "base
    encoder"), so later checks of seen ECGs cover both. ``fit_normalization=False`` keeps the
    encoder's input normalization instead of fitting it on ``train_df``.

    ``train_df`` / ``valid_df``: manifests (train1 / valid1), or TFRecord shards of them (a
    glob or a list of files written by ``ecg-moco convert``). ``strategy``: a
    ``tf.distribute.Strategy`` or a name of :data:`.distribute.STRATEGIES` (default: one
    device); on a multi-worker cluster only the chief writes to ``out_dir``, the other
    workers to ``out_dir/workers/<task>-<index>``.

    Reproducibility: everything after the call is seeded by ``cfg.seed``; a caller-built
    ``encoder`` has the initial weights of its own construction, so seed before building it
    (``keras.utils.set_random_seed``) for identical runs.

    The query encoder chosen by ``cfg.select`` is saved to ``<out_dir>/encoder.keras``, the
    final MoCo model to ``<out_dir>/moco.keras``; ``pretrain_config.json`` says which rule
    chose it (``selected_by``), its epoch (``best_epoch``) and value (``selected_value``).

    ``monitor_train_df`` / ``monitor_valid_df``: labelled manifests (train2 / valid2) for the
    representation monitor (``training.monitor``; labels only reach scikit-learn). Without
    them, with ``monitor_every=0`` or with a one-class split (a warning), there is no monitor
    and ``select="monitor"`` falls back to "last" (printed).

    ``out_dir`` with an unfinished ``backup/`` (a killed run): resume it, with the same ``cfg``.
    ``out_dir`` with a finished run: ``FileExistsError``, unless ``overwrite`` (delete that
    run's outputs and any backup, start fresh). Other files in ``out_dir`` are left alone.
    """
    strategy = distribute.resolve(strategy)
    groups = check_distribution(cfg, strategy)
    if _is_shards(train_df) and len(pipeline.tfrecord_files(train_df)) < distribute.workers(
            strategy):
        raise ValueError(f"{len(pipeline.tfrecord_files(train_df))} train1 TFRecord files for "
                         f"{distribute.workers(strategy)} workers: every worker reads its own "
                         "files; convert with a smaller --shard_size")
    num_train, num_valid = _size(train_df), _size(valid_df)
    lr, steps = check_config(cfg, num_train, num_valid)
    out_dir = distribute.worker_dir(out_dir, strategy)
    resume = _prepare_out_dir(out_dir, overwrite, cfg.epochs)
    keras.utils.set_random_seed(cfg.seed)
    os.makedirs(out_dir, exist_ok=True)
    encoder = encoder or build_encoder()              # built after seeding: reproducible
    raw_train, train, valid, aug = _datasets(train_df, valid_df, cfg, strategy,
                                             fill_cache=distribute.replicas(strategy) > 1)
    if fit_normalization:
        adapt_normalization(encoder, raw_train.batch(cfg.batch_size))
    if cfg.sync_bn and cfg.shuffle_bn_splits > 1:
        print("--sync_bn: batch norms use the statistics of the global batch; shuffle-BN "
              "(--shuffle_bn_splits) is off")
    with distribute.precision(cfg.mixed_precision), strategy.scope():
        # new variables in the strategy's scope, layers in the run's precision and BN mode
        if (not distribute.is_default(strategy) or cfg.sync_bn
                or cfg.mixed_precision != "float32"):
            encoder = copy_model(encoder, sync_bn=True if cfg.sync_bn else None,
                                 dtype=None if cfg.mixed_precision == "float32" else
                                 cfg.mixed_precision)
        moco = MoCo(encoder, version=cfg.version, queue_size=cfg.queue_size,
                    momentum=cfg.momentum, temperature=cfg.temperature,
                    symmetric=cfg.symmetric, shuffle_bn_splits=groups, seed=cfg.seed,
                    momentum_final=cfg.momentum_final,
                    momentum_steps=steps if cfg.momentum_final is not None else 0)
        moco.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=cfg.jit_compile)
    nan = StopOnNaN("Lower learning_rate, raise temperature, or check the input with "
                    "`ecg-moco validate`.")
    monitor, select = None, cfg.select
    portable = lambda: _portable(moco.encoder, cfg, strategy)     # noqa: E731
    if monitor_train_df is not None and monitor_valid_df is not None:
        monitor = build_monitor(portable, monitor_train_df, monitor_valid_df,
                                every=cfg.monitor_every,
                                views_df=None if _is_shards(valid_df) else valid_df,
                                augmenter=aug, seed=cfg.seed + 1, batch_size=cfg.batch_size,
                                options=cfg.read_options)
    if select == "monitor" and monitor is None:
        print("no representation monitor (labelled monitor splits with both classes and "
              "monitor_every >= 1 needed): keeping the last epoch's encoder (select='last')")
        select = "last"
    log = os.path.join(out_dir, "pretrain_log.csv")
    best = SaveBest(os.path.join(out_dir, "encoder.keras"), portable,
                    monitor=_SELECT_KEY[select], mode="max" if select == "monitor" else "min",
                    log_csv=log if resume else None)        # resumed: the best so far
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup")),
        *([monitor] if monitor else []),     # before the loggers and SaveBest: adds to logs
        CSVLog(log, append=resume),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard")),
        nan, best, *extra_callbacks,
    ]
    shards = _is_shards(train_df)
    hist = moco.fit(train, validation_data=valid, epochs=cfg.epochs, callbacks=callbacks,
                    verbose=cfg.verbose, shuffle=False,     # the pipeline shuffles (seeded)
                    steps_per_epoch=num_train // cfg.batch_size if shards else None)
    nan.check()
    moco.save(os.path.join(out_dir, "moco.keras"))
    if best.best_epoch is None:          # resumed after the last epoch, or no finite monitor
        portable().save(best.path)       # value: keep the final encoder
        select = "last"
    key, logs = _SELECT_KEY[select], best.best_logs
    record = _provenance(train_df, valid_df, out_dir, cfg, select, best.best_epoch or cfg.epochs,
                         monitor is not None, base_encoder)
    with open(os.path.join(out_dir, "pretrain_config.json"), "w") as f:
        json.dump({**asdict(cfg), "strategy": distribute.describe(strategy),
                   "replicas": distribute.replicas(strategy), "num_train": num_train,
                   "num_valid": num_valid, "best_epoch": best.best_epoch,
                   "best_val_loss": _number(logs.get("val_loss")), "selected_by": select,
                   "selected_value": _number(logs.get(key)) if key else None,
                   "provenance": record, "run": provenance.run_info()},
                  f, indent=1, default=str)
    return moco, hist.history


def _provenance(train_df, valid_df, out_dir, cfg, select, epoch, monitored, base=None):
    """Write ``pretrain_records.csv`` (manifests) and embed the encoder's provenance in
    ``encoder.keras``: how its epoch was chosen (``selected_by``, whether that saw labels), a
    hash of its pretraining data and, continued from ``base``, the base's provenance. Returns
    the record."""
    import pandas as pd

    if _is_shards(train_df):
        files = pipeline.tfrecord_files(train_df) + pipeline.tfrecord_files(valid_df)
        data_hash = provenance.hashlib_of(sorted(os.path.basename(f) for f in files))
        n_records = None
    else:
        both = pipeline_frame(train_df, valid_df)
        data_hash = provenance.manifest_hash(both)
        records = provenance.pretrain_records(both, cfg.read_options)
        n_records = len(both)
    base_records = provenance.encoder_records(base) if base else None
    if base_records is not None:        # the base's ECGs count as seen (leakage checks)
        base_records = base_records.rename(columns={"source": "base_source"})
        records = pd.concat([records if n_records else None,
                             base_records.assign(source="base encoder")], ignore_index=True)
    if n_records or base_records is not None:
        records.to_csv(os.path.join(out_dir, provenance.RECORDS_FILE), index=False)
    extra = {}
    if base:
        prior = provenance.read_encoder_provenance(base)
        extra["initialized_from"] = {"encoder": os.path.abspath(base),
                                     "sha256": provenance.file_sha256(base),
                                     "provenance": prior}
        if prior.get("labels_seen"):        # the base's choice saw labels: so did this one
            extra["labels_seen_by_base"] = prior.get("labels_seen_splits")
    record = provenance.encoder_record(
        select, epoch, data_hash=data_hash, pretrain_ecgs=n_records,
        monitor_logged_labels=["train2", "valid2"] if monitored else [],
        records_file=provenance.RECORDS_FILE if n_records or base_records is not None else None,
        **extra)
    if "labels_seen_by_base" in extra:
        record["labels_seen"] = True
        record["labels_seen_splits"] = list(record["labels_seen_splits"]) + [
            f"base encoder's {s}" for s in extra["labels_seen_by_base"] or ["labels"]]
    provenance.embed_encoder_provenance(os.path.join(out_dir, "encoder.keras"), record)
    return record


def pipeline_frame(train_df, valid_df):
    import pandas as pd

    both = pd.concat([train_df.assign(split=train_df.get("split", "train1")),
                      valid_df.assign(split=valid_df.get("split", "valid1"))],
                     ignore_index=True)
    both.attrs = dict(train_df.attrs)
    return both
