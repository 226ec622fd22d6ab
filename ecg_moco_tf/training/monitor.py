"""Representation monitor for pretraining: how good are the frozen features, epoch by epoch?

The MoCo validation loss is not comparable across epochs (it depends on the queue, which
changes with the encoder), so pretraining watches what the features are for:

- ``monitor_knn_auc``: cosine kNN (k=20) on a labelled monitor train split (train2): the score
  of a valid2 ECG is the fraction of positives among its k most similar train2 ECGs;
- ``monitor_probe_auc``: logistic regression on standardized features, its C chosen by
  cross-validation (AUC) on train2 only and refit there, AUC on valid2; ``monitor_probe_C``:
  the chosen C (:func:`fit_probe`; a fixed C would flatter features that suit it);
- ``monitor_alignment`` / ``monitor_uniformity`` (Wang & Isola 2020, on L2-normalized
  features): mean squared distance between two fixed augmented views of the same valid1 ECG
  (lower: invariant to the augmentations), and log of the mean Gaussian potential
  ``exp(-2 ||f(x) - f(y)||^2)`` over pairs of distinct ECGs (lower: spread on the sphere).

Labels are only read by scikit-learn here; they never reach the encoder's training.
:class:`RepresentationMonitor` adds these keys to the epoch ``logs`` (put it before
``CSVLogger``/``TensorBoard``/``SaveBest`` in the callbacks); :func:`probe_scores` and
:func:`alignment_uniformity` are the pure functions it uses; :func:`probe_auc` is the probe
alone, also used by ``experiments/probe_features.py``.
"""
from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pandas as pd

KEYS = ("monitor_knn_auc", "monitor_probe_auc", "monitor_alignment", "monitor_uniformity",
        "monitor_probe_C")
MAX_ECGS = 2000          # per monitor split (seeded sample): memory stays bounded
MAX_VIEW_ECGS = 512      # valid1 ECGs whose two fixed views give alignment / uniformity
PROBE_C = 1.0            # the probe's C where train has < 2 ECGs of a class (no CV possible)
PROBE_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))    # C grid of the cross-validation
PROBE_FOLDS = 5
PROBE_MAX_ITER = 10000


def l2_normalize(z, eps=1e-12):
    z = np.asarray(z, np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), eps)


def class_counts(y):
    """(negatives, positives) of a label vector (NaN not counted)."""
    y = np.asarray(y, np.float64)
    return int(np.sum(y == 0)), int(np.sum(y == 1))


def check_split(name, y):
    """None if ``y`` holds both classes, else the reason (naming the split and its counts)."""
    neg, pos = class_counts(y)
    if neg and pos:
        return None
    return (f"monitor split {name} needs both classes, has {neg} negative and {pos} positive "
            "labelled ECGs")


def knn_scores(train_feats, train_y, valid_feats, k=20):
    """Cosine kNN: per valid row, the fraction of positives among its ``k`` most similar train
    rows (k capped at the train size; ties broken by train order)."""
    t, v = l2_normalize(train_feats), l2_normalize(valid_feats)
    y = np.asarray(train_y, np.float64)
    k = min(int(k), len(t))
    sim = v @ t.T
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return y[nearest].mean(axis=1)


def fit_probe(train_feats, train_y, seed=0, Cs=PROBE_CS, C=None, groups=None):
    """A logistic regression on standardized features fit on (``train_feats``, ``train_y``),
    its inverse regularization C chosen there alone: the C of ``Cs`` with the highest mean AUC
    over a seeded, stratified ``min(5, smaller class count)``-fold cross-validation of the
    whole pipeline (scaler fit within each fold; ties: the smaller C; with ``groups``, the
    patient ids, folds keep each patient whole: ``StratifiedGroupKFold``), then refit on all of
    train. ``C`` (a number) skips the search; with fewer than 2 ECGs (with ``groups``:
    patients) of a class, or a fold that cannot be scored, it is :data:`PROBE_C`. Deterministic (lbfgs). Returns (fitted pipeline, C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(train_feats, np.float64), np.asarray(train_y).astype(int)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
    if groups is None:
        folds = min(PROBE_FOLDS, *class_counts(y))
    else:                                 # whole patients: count them, per patient label
        groups = np.asarray(groups).astype(str)
        plab = pd.Series(y).groupby(groups).max()
        folds = min(PROBE_FOLDS, int((plab == 1).sum()), int((plab == 0).sum()))
    if C is None and folds >= 2:
        kfold = StratifiedKFold if groups is None else StratifiedGroupKFold
        cv = kfold(n_splits=folds, shuffle=True, random_state=seed)
        search = GridSearchCV(probe, {"logisticregression__C": sorted(float(c) for c in Cs)},
                              scoring="roc_auc", cv=cv, refit=True, error_score="raise")
        with warnings.catch_warnings():       # a one-class fold scores NaN: checked below
            warnings.simplefilter("ignore")
            search.fit(x, y, groups=groups)
        if np.isfinite(search.cv_results_["mean_test_score"]).all():
            return search.best_estimator_, float(search.best_params_["logisticregression__C"])
    C = PROBE_C if C is None else float(C)
    probe.set_params(logisticregression__C=C)
    return probe.fit(x, y), C


def probe_auc(train_features, train_labels, valid_features, valid_labels, seed=0,
              Cs=PROBE_CS, C=None, train_groups=None):
    """``{"auc", "C"}``: AUC on valid of the :func:`fit_probe` probe of train (C chosen by
    cross-validation on train only, by patient with ``train_groups``, unless ``C`` is given;
    valid is only scored). Raises
    ``ValueError`` if train or valid lacks a class."""
    from sklearn.metrics import roc_auc_score

    for name, y in (("train", train_labels), ("valid", valid_labels)):
        reason = check_split(name, y)
        if reason:
            raise ValueError(reason)
    probe, C = fit_probe(train_features, train_labels, seed=seed, Cs=Cs, C=C,
                         groups=train_groups)
    p = probe.predict_proba(np.asarray(valid_features, np.float64))[:, 1]
    return {"auc": float(roc_auc_score(np.asarray(valid_labels).astype(int), p)), "C": C}


def probe_scores(train_feats, train_y, valid_feats, valid_y, k=20, C=None, seed=0,
                 train_groups=None):
    """``{"knn_auc", "probe_auc", "probe_C"}`` of frozen features: cosine kNN
    (:func:`knn_scores`) and the logistic probe of :func:`probe_auc` (C chosen by
    cross-validation on train, or ``C`` fixed), both fit on train and scored by AUC on valid.
    Raises ``ValueError`` if train or valid lacks a class."""
    from sklearn.metrics import roc_auc_score

    probe = probe_auc(train_feats, train_y, valid_feats, valid_y, seed=seed, C=C,
                      train_groups=train_groups)                      # checks both splits
    train_y, valid_y = np.asarray(train_y).astype(int), np.asarray(valid_y).astype(int)
    knn = roc_auc_score(valid_y, knn_scores(train_feats, train_y, valid_feats, k))
    return {"knn_auc": float(knn), "probe_auc": probe["auc"], "probe_C": probe["C"]}


def uniformity(z, t=2.0):
    """``log mean exp(-t ||z_i - z_j||^2)`` over pairs i < j of L2-normalized rows (NaN for
    fewer than 2 rows)."""
    from scipy.spatial.distance import pdist
    from scipy.special import logsumexp

    z = l2_normalize(z)
    if len(z) < 2:
        return math.nan
    d2 = pdist(z, "sqeuclidean")
    return float(logsumexp(-t * d2) - np.log(len(d2)))


def alignment_uniformity(za, zb, alpha=2, t=2.0):
    """Wang & Isola (2020) on two views ``za``, ``zb`` (row i of both: the same ECG), L2-
    normalized here: alignment = mean ``||za_i - zb_i||^alpha``; uniformity = the mean of
    :func:`uniformity` of each view (pairs of distinct ECGs only). Returns (align, unif)."""
    za, zb = l2_normalize(za), l2_normalize(zb)
    if za.shape != zb.shape:
        raise ValueError(f"views differ in shape: {za.shape} vs {zb.shape}")
    align = float(np.mean(np.linalg.norm(za - zb, axis=1) ** alpha)) if len(za) else math.nan
    return align, float((uniformity(za, t) + uniformity(zb, t)) / 2)


class RepresentationMonitor(keras.callbacks.Callback):
    """Every ``every`` epochs (and at the last one) add :data:`KEYS` to the epoch logs: kNN and
    logistic-probe AUC of the frozen features of ``get_encoder()`` (train -> valid), and,
    given ``views=(view_a, view_b)`` (two fixed augmentations of the same ECGs), alignment
    and uniformity. Other epochs log NaN (CSVLogger wants the same keys every epoch).

    A monitor split that is empty or lacks a class disables the monitor with a warning (it
    then logs nothing). Non-finite features, or a failure of the probe (a warning), log NaN
    for that epoch.
    """

    def __init__(self, get_encoder, train_signals, train_labels, valid_signals, valid_labels,
                 every=1, k=20, views=None, batch_size=64, train_groups=None):
        super().__init__()
        self.get_encoder, self.every, self.k, self.batch_size = get_encoder, int(every), k, \
            batch_size
        self.train_x, self.valid_x = train_signals, valid_signals
        self.train_y = np.asarray(train_labels, np.float64)
        self.valid_y = np.asarray(valid_labels, np.float64)
        self.views, self.train_groups = views, train_groups
        self.reason = None
        if self.every < 1:
            self.reason = f"monitor_every={every}"
        for name, y in (("train", self.train_y), ("valid", self.valid_y)):
            self.reason = self.reason or check_split(name, y)
        if self.reason:
            warnings.warn(f"representation monitor disabled: {self.reason}")
        self.history = []

    @property
    def enabled(self):
        return self.reason is None

    def _due(self, epoch):
        last = (self.params or {}).get("epochs")
        return (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 >= last)

    def _features(self, encoder, x):
        return encoder.predict(x, batch_size=self.batch_size, verbose=0)

    def compute(self):
        """The monitor values of the current encoder (dict over :data:`KEYS`)."""
        enc = self.get_encoder()
        out = dict.fromkeys(KEYS, math.nan)
        ft, fv = self._features(enc, self.train_x), self._features(enc, self.valid_x)
        if np.isfinite(ft).all() and np.isfinite(fv).all():
            s = probe_scores(ft, self.train_y, fv, self.valid_y, k=self.k,
                             train_groups=self.train_groups)
            out.update(monitor_knn_auc=s["knn_auc"], monitor_probe_auc=s["probe_auc"],
                       monitor_probe_C=s["probe_C"])
        if self.views is not None and len(self.views[0]):
            za, zb = (self._features(enc, v) for v in self.views)
            if np.isfinite(za).all() and np.isfinite(zb).all():
                out["monitor_alignment"], out["monitor_uniformity"] = alignment_uniformity(
                    za, zb)
        return out

    def on_epoch_end(self, epoch, logs=None):
        if not self.enabled or logs is None:
            return
        values = dict.fromkeys(KEYS, math.nan)
        if self._due(epoch):
            try:
                values = self.compute()
            except Exception as e:         # a monitor failure must not end a long pretraining
                warnings.warn(f"representation monitor failed at epoch {epoch + 1}: "
                              f"{type(e).__name__}: {e}")
        logs.update(values)
        self.history.append({"epoch": epoch + 1, **values})      # 1-based, as the CSV log


def _sample(df, n, seed):
    if df is None or len(df) <= n:
        return df
    return df.sample(n=n, random_state=seed).sort_index()


def split_labels(df):
    """The ``label`` column of a manifest as float64 (NaN: unlabelled)."""
    import pandas as pd

    return pd.to_numeric(df["label"], errors="coerce").to_numpy(np.float64)


def build_monitor(get_encoder, train_df, valid_df, every=1, views_df=None, augmenter=None,
                  seed=0, batch_size=64, k=20, max_ecgs=MAX_ECGS, max_view_ecgs=MAX_VIEW_ECGS,
                  options=None):
    """A :class:`RepresentationMonitor` from manifests (records read with ``options``, a
    ``ReadOptions``; default: the standard ones): labelled ``train_df``/``valid_df``
    (unlabelled rows dropped; a seeded sample of at most ``max_ecgs`` each) and, with
    ``augmenter``, two fixed views (stateless seeds from ``seed``) of at most
    ``max_view_ecgs`` ECGs of ``views_df`` for alignment / uniformity.

    Returns None, with a warning naming the split and its class counts, when a split is
    missing, empty or one-class (checked before any record is read), or ``every`` < 1."""
    from ..data import ReadOptions, load_records

    options = options or ReadOptions()
    if every < 1:
        return None
    parts = {}
    for name, df in (("train", train_df), ("valid", valid_df)):
        if df is not None:
            df = df[~np.isnan(split_labels(df))]
        reason = check_split(name, [] if df is None else split_labels(df))
        if reason:
            warnings.warn(f"representation monitor disabled: {reason}")
            return None
        parts[name] = _sample(df, max_ecgs, seed)
    data, groups = {}, None
    for name, df in parts.items():
        rec = load_records(df, on_error="skip", progress=False, options=options)
        if len(rec.problems):
            warnings.warn(f"representation monitor: {len(rec.problems)} unreadable records of "
                          f"the {name} split left out")
        data[name] = (rec.signals, split_labels(rec.manifest))
        groups = rec.manifest["patient_id"].astype(str).to_numpy() if name == "train" else groups
    views = None
    if views_df is not None and augmenter is not None and len(views_df) > 1:
        x = load_records(_sample(views_df, max_view_ecgs, seed), on_error="skip",
                         progress=False, options=options).signals
        views = fixed_views(x, augmenter, seed, batch_size)
    return RepresentationMonitor(get_encoder, *data["train"], *data["valid"], every=every, k=k,
                                 views=views, batch_size=batch_size, train_groups=groups)


def fixed_views(x, augmenter, seed, batch_size=64):
    """Two augmented views (numpy) of ``x``, drawn once with stateless seeds from ``seed``."""
    import tensorflow as tf

    a, b = [], []
    for i in range(0, len(x), batch_size):
        s = tf.constant([seed, i], tf.int64)
        sa, sb = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        a.append(np.asarray(augmenter.apply(x[i:i + batch_size], sa)))
        b.append(np.asarray(augmenter.apply(x[i:i + batch_size], sb)))
    return np.concatenate(a), np.concatenate(b)
