"""Fine-tuning with the paper's learning-rate sweep; keep the lowest validation loss.

For every learning rate (default 1e-4, 3e-5, 1e-5, the paper's) a fresh classifier is built
from a copy of the starting encoder (pretrained, or random with a fixed seed, so every rate
starts from the same weights), trained with Adam and binary cross-entropy, early-stopped on
validation loss with the best weights restored. The model with the lowest validation loss
across the sweep is returned.

Class imbalance: by default none of the loss is re-weighted: the sigmoid output then stays a
calibrated probability at the training prevalence, and AUC does not depend on prevalence
(the paper's downstream set is 31 % positive). ``class_weight="balanced"`` weights the classes
inversely to their frequency, for very rare findings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from ..augment import build_augmenter
from ..data import pipeline
from ..models.classifier import build_classifier, copy_encoder
from ..models.encoder import adapt_normalization, build_encoder
from .callbacks import StopOnNaN

PAPER_LEARNING_RATES = (1e-4, 3e-5, 1e-5)


@dataclass
class FinetuneConfig:
    """Fine-tuning settings (each is a flag of ``ecg-moco finetune``)."""

    learning_rates: tuple = PAPER_LEARNING_RATES
    epochs: int = 50
    batch_size: int = 32
    patience: int = 5
    hidden_units: int = 64
    dropout: float = 0.0
    freeze_encoder: bool = False
    class_weight: str = "none"          # or "balanced"
    augment: bool = False
    cache: bool = True
    seed: int = 0
    verbose: int = 2


@dataclass
class FinetuneResult:
    model: keras.Model
    best_learning_rate: float
    sweep: pd.DataFrame                 # one row per learning rate
    histories: dict


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


def finetune(train_df, valid_df, encoder=None, cfg=FinetuneConfig(), out_dir=None,
             encoder_kwargs=None):
    """Fine-tune from ``encoder`` (None: random init of ``build_encoder(**encoder_kwargs)``).

    The given encoder is never modified (each learning rate works on a copy). A random encoder
    gets its normalization adapted on ``train_df``; a pretrained one keeps its own.
    """
    _labelled(train_df, "train")
    _labelled(valid_df, "valid")
    keras.utils.set_random_seed(cfg.seed)
    cache = "" if cfg.cache else None
    train = pipeline.manifest_dataset(train_df, shuffle=True, seed=cfg.seed, cache=cache)
    valid = pipeline.manifest_dataset(valid_df, cache=cache)
    if encoder is None:
        encoder = build_encoder(**(encoder_kwargs or {}))
        adapt_normalization(encoder, train.batch(cfg.batch_size))
    aug = build_augmenter(seed=cfg.seed) if cfg.augment else None
    train_b = pipeline.supervised(train, cfg.batch_size, augmenter=aug, seed=cfg.seed)
    valid_b = pipeline.supervised(valid, cfg.batch_size)
    rows, histories, best = [], {}, None
    for lr in cfg.learning_rates:
        keras.utils.set_random_seed(cfg.seed)             # same head init for every rate
        model = build_classifier(copy_encoder(encoder), cfg.hidden_units, cfg.dropout,
                                 cfg.freeze_encoder)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy",
                      metrics=[keras.metrics.AUC(name="auc")])
        nan = StopOnNaN(f"Lower the learning rate (now {lr:g}) or check the input with "
                        "`ecg-moco validate`.")
        callbacks = [keras.callbacks.EarlyStopping("val_loss", patience=cfg.patience,
                                                   restore_best_weights=True), nan]
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            callbacks.append(keras.callbacks.CSVLogger(os.path.join(out_dir,
                                                                    f"finetune_lr{lr:g}.csv")))
        if cfg.verbose:
            print(f"fine-tuning with learning rate {lr:g}")
        hist = model.fit(train_b, validation_data=valid_b, epochs=cfg.epochs,
                         class_weight=_class_weight(train_df, cfg.class_weight),
                         callbacks=callbacks, verbose=cfg.verbose, shuffle=False).history
        nan.check()
        val = np.asarray(hist["val_loss"])
        rows.append({"learning_rate": lr, "best_val_loss": float(val.min()),
                     "best_epoch": int(val.argmin()) + 1, "epochs_run": len(val),
                     "best_val_auc": float(np.asarray(hist["val_auc"])[val.argmin()])})
        histories[lr] = hist
        if best is None or val.min() < best[0]:
            best = (float(val.min()), lr, model)
    sweep = pd.DataFrame(rows)
    if out_dir:
        sweep.to_csv(os.path.join(out_dir, "lr_sweep.csv"), index=False)
        best[2].save(os.path.join(out_dir, "classifier.keras"))
    return FinetuneResult(best[2], best[1], sweep, histories)


def predict(model, df, batch_size=64):
    """Probabilities for every ECG of a manifest, as a DataFrame beside its ids and labels."""
    ds = pipeline.supervised(pipeline.manifest_dataset(df), batch_size)
    prob = model.predict(ds.map(lambda x, y: x), verbose=0).ravel()
    return pd.DataFrame({"record": df["record"].to_numpy(),
                         "patient_id": df["patient_id"].to_numpy(),
                         "label": df["label"].to_numpy(), "probability": prob})
