"""tf.data input pipelines: from a manifest (records read in parallel) or from TFRecord shards.

Elements before batching are dicts ``{"signal": (12, 5000) float32 mV, "label": float32 (NaN if
unknown), "record": string, "index": int64}``. Two finishing steps turn them into what Keras
wants:

- :func:`supervised` -> ``(signal, label)`` batches for classification;
- :func:`two_view` -> ``(query_view, key_view)`` batches for MoCo, each view an independent
  draw of the augmentations (stateless seeds from ``seed``, the epoch and the batch index, so
  the same seed gives the same views).

Memory does not grow with the data set: a manifest pipeline keeps only the (small) table of
paths and streams records through ``num_parallel_calls`` readers; a TFRecord pipeline streams
shards. Shuffling is seeded (indices are shuffled, not signals, for manifests; a bounded
``shuffle_buffer`` for TFRecords). ``cache`` (a path, or "" for memory) stores decoded records
after the first epoch (see :func:`manifest_dataset`); use it only when the data fit.
"""
from __future__ import annotations

import glob
import os

import numpy as np

from .. import console

console.import_tensorflow_quietly()      # before TensorFlow: no start-up notices
import tensorflow as tf  # noqa: E402
from tqdm.auto import tqdm

from .manifest import UnreadableRecords, _row_hints, record_path
from .records import NUM_SAMPLES, ReadOptions, RecordError, read_record

AUTOTUNE = tf.data.AUTOTUNE
_SPEC = {"signal": tf.TensorSpec([12, NUM_SAMPLES], tf.float32),
         "label": tf.TensorSpec([], tf.float32), "record": tf.TensorSpec([], tf.string),
         "index": tf.TensorSpec([], tf.int64)}


def _labels(df):
    import pandas as pd

    return pd.to_numeric(df["label"], errors="coerce").to_numpy(np.float32, na_value=np.nan)


def manifest_dataset(df, shuffle=False, seed=0, options=ReadOptions(), num_parallel_calls=2,
                     cache=None, fill_cache=False):
    """Stream the records of a manifest (rows in order, or shuffled per epoch with ``seed``).

    ``cache`` ("" = memory, or a file path) keeps decoded records after the first epoch; the
    shuffle then happens after the cache (a shuffle buffer of the whole set), so every epoch
    still gets a new order. ``fill_cache``: read every record into the cache now. Use it
    under ``tf.distribute``: there, Keras's distributed iterators start and abandon
    iterations of the dataset, and an in-memory cache filled by such overlapping iterators
    was seen to keep only part of the records (3 of 20 validation ECGs lost, silently, in 2
    of 4 runs on 2 replicas); a completed cache is only read.

    A record that cannot be read stops the pipeline with an error naming it: run
    ``ecg-moco validate`` first, or ``ecg-moco convert`` (which reports and skips bad records).
    """
    rows = [row for _, row in df.iterrows()]
    paths = [record_path(df, row) for row in rows]
    hints = [_row_hints(row) for row in rows]
    names = df["record"].astype(str).tolist()
    labels = _labels(df)

    def read(i):
        i = int(i)
        fs, leads = hints[i]
        try:
            return read_record(paths[i], fs=fs, leads=leads, options=options, record=names[i])
        except RecordError as e:
            raise ValueError(str(e)) from e     # tf.data shows the message and the record

    ds = tf.data.Dataset.range(len(df))
    if shuffle and cache is None:
        ds = ds.shuffle(len(df), seed=seed, reshuffle_each_iteration=True)

    def load(i):
        x = tf.numpy_function(read, [i], tf.float32, stateful=False)
        x.set_shape([12, options.num_samples])
        return {"signal": x, "label": tf.gather(labels, i), "record": tf.gather(names, i),
                "index": i}

    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    if cache is not None:
        ds = ds.cache(cache)
        if fill_cache:
            ds.reduce(np.int64(0), lambda n, _: n + 1)
        if shuffle:
            ds = ds.shuffle(len(df), seed=seed, reshuffle_each_iteration=True)
    return ds


def array_dataset(x, df, shuffle=False, seed=0):
    """The elements of :func:`manifest_dataset` from ECGs held in memory: ``x`` (ECGs, 12,
    samples) float32 beside ``df``'s labels and record names, rows in order or shuffled per
    epoch with ``seed``."""
    ds = tf.data.Dataset.from_tensor_slices({
        "signal": x, "label": _labels(df), "record": df["record"].astype(str).to_numpy(),
        "index": np.arange(len(df), dtype=np.int64)})
    if shuffle:
        ds = ds.shuffle(len(df), seed=seed, reshuffle_each_iteration=True)
    return ds


# ---------------------------------------------------------------------------------- TFRecords
def _example(signal, label, record, index):
    d = np.clip(np.rint(signal * 1000), -32767, 32767).astype("<i2")     # 1 uV, as WFDB fmt 16
    feat = {
        "signal": tf.train.Feature(bytes_list=tf.train.BytesList(value=[d.tobytes()])),
        "label": tf.train.Feature(float_list=tf.train.FloatList(value=[label])),
        "record": tf.train.Feature(bytes_list=tf.train.BytesList(value=[record.encode()])),
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString()


def write_tfrecords(df, out_dir, shard_size=1024, options=ReadOptions(), on_error="raise",
                    progress=True):
    """Convert a manifest to sharded TFRecords (``<split>-00000-of-000NN.tfrecord``).

    Signals are stored as int16 microvolts (lossless for WFDB format 16). Records are grouped by
    the manifest's ``split`` (``all`` when empty). Bad records are collected: ``on_error='raise'``
    raises after listing them, ``'skip'`` leaves them out; both return the problems table.
    """
    import pandas as pd

    os.makedirs(out_dir, exist_ok=True)
    labels = _labels(df)
    split = df["split"].fillna("all") if "split" in df else pd.Series("all", index=df.index)
    problems, written = [], {}
    bar = tqdm(total=len(df), desc="converting", unit="ecg", disable=not progress)
    for name, part in df.groupby(split.to_numpy(), sort=True):
        rows = np.where(split.to_numpy() == name)[0]
        n_shards = max(1, int(np.ceil(len(rows) / shard_size)))
        for s in range(n_shards):
            path = os.path.join(out_dir, f"{name}-{s:05d}-of-{n_shards:05d}.tfrecord")
            with tf.io.TFRecordWriter(path) as w:
                for i in rows[s * shard_size:(s + 1) * shard_size]:
                    row = df.iloc[i]
                    fs, leads = _row_hints(row)
                    try:
                        x = read_record(record_path(df, row), fs=fs, leads=leads,
                                        options=options, record=row["record"])
                    except RecordError as e:
                        problems.append({"record": e.record, "problem": e.detail})
                    else:
                        w.write(_example(x, float(labels[i]), str(row["record"]), int(i)))
                        written[name] = written.get(name, 0) + 1
                    bar.update(1)
    bar.close()
    problems = pd.DataFrame(problems, columns=["record", "problem"])
    if len(problems) and on_error == "raise":
        raise UnreadableRecords(problems, len(df), "converted")
    return written, problems


def tfrecord_files(pattern):
    """The sorted files of a glob (or a list of files, returned as a list); FileNotFoundError
    naming the pattern when there are none."""
    files = sorted(glob.glob(pattern)) if isinstance(pattern, str) else list(pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {pattern}")
    return files


def count_tfrecords(pattern):
    """Number of records in TFRecord shards (reads them once, without parsing)."""
    ds = tf.data.TFRecordDataset(tfrecord_files(pattern), num_parallel_reads=AUTOTUNE)
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1))


def tfrecord_dataset(pattern, shuffle=False, seed=0, shuffle_buffer=2048, num_samples=NUM_SAMPLES):
    """Stream TFRecord shards written by :func:`write_tfrecords` (a glob or a list of files)."""
    files = tfrecord_files(pattern)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                       num_parallel_calls=AUTOTUNE, deterministic=True)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    spec = {"signal": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.float32),
            "record": tf.io.FixedLenFeature([], tf.string),
            "index": tf.io.FixedLenFeature([], tf.int64)}

    def parse(ex):
        f = tf.io.parse_single_example(ex, spec)
        x = tf.cast(tf.io.decode_raw(f["signal"], tf.int16), tf.float32) / 1000.0
        f["signal"] = tf.reshape(x, [12, num_samples])
        return f

    return ds.map(parse, num_parallel_calls=AUTOTUNE)


# ------------------------------------------------------------------------------ finishing
def supervised(ds, batch_size=32, augmenter=None, seed=0, drop_remainder=False,
               with_ids=False):
    """``(signal, label)`` batches (label float32, shape (B,)); optional augmentation."""
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augmenter is not None:
        ds = _with_batch_seeds(ds, seed).map(
            lambda s, b: {**b, "signal": augmenter.apply(b["signal"], s)},
            num_parallel_calls=AUTOTUNE)
    if with_ids:
        return ds.prefetch(AUTOTUNE)
    return ds.map(lambda b: (b["signal"], b["label"])).prefetch(AUTOTUNE)


def _with_batch_seeds(ds, seed, fixed=False):
    """Pair each batch with a (2,) int64 seed, fixed by ``seed`` and new in every epoch, or
    the same in every epoch with ``fixed``."""
    rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=not fixed)
    return tf.data.Dataset.zip(rand, ds).enumerate().map(
        lambda i, rb: (tf.stack([rb[0], i]), rb[1]))


def two_view(ds, augmenter, batch_size=64, seed=0, drop_remainder=True, fixed=False):
    """``(query_view, key_view)`` batches for MoCo: two independent augmentations per ECG.

    ``fixed``: the same views in every epoch (validation: losses comparable in views; the
    order of ``ds`` must be fixed too), instead of new draws each epoch (training)."""
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def views(s, b):
        sq, sk = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        return augmenter.apply(b["signal"], sq), augmenter.apply(b["signal"], sk)

    return _with_batch_seeds(ds, seed, fixed).map(views, num_parallel_calls=AUTOTUNE).prefetch(
        AUTOTUNE)
