"""tf.distribute figures, and the measurements behind benchmarks/gpu_check.sh. Prints JSON.

Commands (each measurement runs in a fresh process: devices must be set up before
TensorFlow starts, and a crash stays in its process):

  bench_distribute.py               the CPU figures below as one JSON object (replicas + stream;
                                    the stream writes 12 GB of temporary shards, deleted after,
                                    and takes ~5 min on 2 cores)
  bench_distribute.py replicas      MoCo train-step ECG/s, full 12 x 5000, default encoder, on
                                    1 replica and on 2 (MirroredStrategy; the CPU split into 2
                                    logical devices, both runs in that setting); global batch
                                    --batch, per-replica throughput = ECG/s / replicas
  bench_distribute.py stream        write --ecgs synthetic ECGs as TFRecord shards (a pool of
                                    --distinct ECGs written again and again under new ids) and
                                    stream them through the pretraining input (shuffle buffer,
                                    two augmented views): resident memory at 10 %, 25 %, 50 %,
                                    75 % and 100 % of the stream and its peak; bytes per ECG
  bench_distribute.py step          one JSON line: MoCo step ECG/s at --batch, --precision,
                                    --xla, --size (gpu_check.sh)
  bench_distribute.py run           a --epochs run of --ecgs synthetic ECGs an epoch (MoCo.fit
                                    on the two-view pipeline, in-memory pool of --pool ECGs):
                                    one JSON line after each epoch (so that a run stopped by a
                                    time limit still leaves a figure), the last one with the
                                    seconds per epoch and the paper-scale estimate (gpu_check.sh)

--size tiny: a two-block encoder (tests/sizes.py TINY) for a fast check of every code path.
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)                                   # tests.sizes


def _rss_mb(field="VmRSS"):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _setup_cpus(n):
    """Split the CPU into ``n`` logical devices (before TensorFlow initializes them)."""
    import tensorflow as tf

    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def _device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x {details.get('device_name', 'GPU')}"
    return f"CPU ({os.cpu_count()} cores)"


def _encoder(size):
    from ecg_moco_tf.models import build_encoder

    if size == "tiny":
        from tests.sizes import TINY

        return build_encoder(**TINY)
    return build_encoder()


def _strategy(name, cpus):
    import tensorflow as tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU")[:cpus])]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def _moco(args, strategy, queue_size=4096):
    import keras

    from ecg_moco_tf.models import MoCo, copy_model
    from ecg_moco_tf.training import distribute

    keras.utils.set_random_seed(0)
    enc = _encoder(args.size)
    with distribute.precision(args.precision), strategy.scope():
        enc = copy_model(enc, dtype=None if args.precision == "float32" else args.precision)
        moco = MoCo(enc, queue_size=queue_size, seed=0, shuffle_bn_splits=args.shuffle_bn_splits)
        moco.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=args.xla)
    return moco


def _peak_gpu_mb():
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20)


def step(args):
    """MoCo train steps on a constant batch (two views), ``fit`` on a repeated dataset."""
    _setup_cpus(args.cpus)
    import tensorflow as tf

    strategy = _strategy(args.strategy, args.cpus)
    moco = _moco(args, strategy)
    with tf.device("/cpu:0"):                      # tf.data input lives on the host
        x = tf.random.normal([args.batch, 12, 5000], seed=0) * 0.3
        data = tf.data.Dataset.from_tensors((x, x + 0.01)).repeat()
    t0 = time.perf_counter()
    moco.fit(data, epochs=1, steps_per_epoch=args.warmup, verbose=0)   # trace, compile, warm
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    logs = moco.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0).history
    dt = time.perf_counter() - t0
    replicas = strategy.num_replicas_in_sync
    return {"check": "moco_step", "device": _device(), "strategy": args.strategy,
            "replicas": replicas, "batch": args.batch, "precision": args.precision,
            "xla": args.xla, "size": args.size, "steps": args.steps,
            "ecg_per_s": round(args.batch * args.steps / dt, 1),
            "ecg_per_s_per_replica": round(args.batch * args.steps / dt / replicas, 1),
            "step_s": round(dt / args.steps, 4), "warmup_s": round(first, 1),
            "loss": round(float(logs["loss"][-1]), 4), "peak_rss_mb": round(_rss_mb("VmHWM")),
            "peak_gpu_mb": _peak_gpu_mb()}


def run(args):
    """A short pretraining run at paper scale on synthetic ECGs (no disk: an in-memory pool)."""
    import numpy as np
    import tensorflow as tf

    from ecg_moco_tf.augment import build_augmenter
    from ecg_moco_tf.data import pipeline, synthetic
    from ecg_moco_tf.training.callbacks import EpochTimer

    t_start = time.perf_counter()
    sig, _, _ = synthetic.generate(synthetic.CohortConfig(
        num_patients=max(8, args.pool // 2 + 8), seed=0))
    with tf.device("/cpu:0"):                      # tf.data input lives on the host
        pool = tf.constant(sig[:args.pool])
    del sig
    n = len(pool)
    ds = tf.data.Dataset.range(args.ecgs).shuffle(min(args.ecgs, 10000), seed=0).map(
        lambda i: {"signal": tf.gather(pool, i % n)}, num_parallel_calls=tf.data.AUTOTUNE)
    views = pipeline.two_view(ds.repeat(), build_augmenter(seed=0), args.batch, seed=0)
    steps = args.ecgs // args.batch
    moco = _moco(args, tf.distribute.get_strategy(), min(4096, args.ecgs // 2))
    def progress(epoch, seconds, logs):
        print(json.dumps({"check": "paper_size_run", "progress": f"epoch {epoch + 1}",
                          "epoch_s": round(seconds, 1),
                          "ecg_per_s": round(steps * args.batch / seconds, 1),
                          "loss": round(float(logs["loss"]), 4)}), flush=True)

    clock = EpochTimer(progress)
    prep = time.perf_counter() - t_start
    hist = moco.fit(views, epochs=args.epochs, steps_per_epoch=steps, verbose=0,
                    callbacks=[clock]).history
    times = clock.times
    steady = min(times[1:] or times)
    per_s = steps * args.batch / steady
    return {"check": "paper_size_run", "device": _device(), "ecgs_per_epoch": steps * args.batch,
            "epochs": args.epochs, "batch": args.batch, "precision": args.precision,
            "xla": args.xla, "size": args.size, "distinct_ecgs": n,
            "epoch_s": [round(t, 1) for t in times], "total_s": round(sum(times), 1),
            "setup_s": round(prep, 1), "steady_ecg_per_s": round(per_s, 1),
            "estimate_30_epochs_h": round(30 * 37000 / per_s / 3600, 2),
            "estimate_100_epochs_h": round(100 * 37000 / per_s / 3600, 2),
            "final_loss": round(float(hist["loss"][-1]), 4),
            "finite": bool(np.isfinite(hist["loss"]).all()),
            "peak_gpu_mb": _peak_gpu_mb()}


def _write_shards(path, ecgs, distinct, shard_size):
    """``ecgs`` synthetic ECGs as TFRecord shards (``distinct`` generated ones, rewritten
    under new ids), as ``ecg-moco convert`` writes them (int16 microvolts)."""
    import tensorflow as tf

    from ecg_moco_tf.data import pipeline, synthetic

    sig, _, table = synthetic.generate(synthetic.CohortConfig(
        num_patients=distinct // 2 + 8, seed=0))
    sig, labels = sig[:distinct], table["label"].to_numpy("float32")[:distinct]
    shards = (ecgs + shard_size - 1) // shard_size
    for s in range(shards):
        name = os.path.join(path, f"train1-{s:05d}-of-{shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(name) as w:
            for i in range(s * shard_size, min(ecgs, (s + 1) * shard_size)):
                j = i % len(sig)
                w.write(pipeline._example(sig[j], float(labels[j]), f"synth_{i}", i))
    return shards


def stream(args):
    """Stream shards through the pretraining input; resident memory along the way."""
    import numpy as np

    from ecg_moco_tf.augment import build_augmenter
    from ecg_moco_tf.data import pipeline

    pattern = os.path.join(args.dir, "train1-*.tfrecord")
    files = pipeline.tfrecord_files(pattern)
    total = sum(os.path.getsize(f) for f in files)
    ds = pipeline.tfrecord_dataset(files, shuffle=True, seed=0)
    views = pipeline.two_view(ds, build_augmenter(seed=0), 64, seed=0, drop_remainder=False)
    marks = {round(args.ecgs * q): f"rss_mb_at_{int(q * 100)}pct"
             for q in (0.1, 0.25, 0.5, 0.75)}
    res, seen, t0 = {}, 0, time.perf_counter()
    for q, k in views:
        seen += int(q.shape[0])
        for mark in [m for m in marks if seen >= m]:
            res[marks.pop(mark)] = round(_rss_mb())
    dt = time.perf_counter() - t0
    res.update({"check": "stream", "ecgs_streamed": seen, "files": len(files),
                "bytes_per_ecg": round(total / seen), "shard_bytes_total": total,
                "raw_int16_bytes_per_ecg": 12 * 5000 * 2, "rss_mb_at_100pct": round(_rss_mb()),
                "peak_rss_mb": round(_rss_mb("VmHWM")), "ecg_per_s": round(seen / dt, 1),
                "finite": bool(np.isfinite(k.numpy()).all())})
    return res


def _child(command, *flags, timeout=3600):
    out = subprocess.run([sys.executable, __file__, command, *flags], capture_output=True,
                         text=True, timeout=timeout)
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


def replicas(args):
    """1 vs 2 replicas, alternated ``--repeats`` times (a machine shared with other jobs
    swings by 2x within minutes): medians, and every value."""
    import statistics

    runs = {"default": [], "mirrored": []}
    errors = {}
    for _ in range(args.repeats):
        for name in runs:
            r = _child("step", f"--strategy={name}", "--cpus=2", f"--batch={args.batch}",
                       f"--steps={args.steps}", f"--warmup={args.warmup}",
                       f"--shuffle_bn_splits={args.shuffle_bn_splits}")
            if "error" in r:
                errors[name] = r["error"]
            else:
                runs[name].append(r)
    rate = {k: [r["ecg_per_s"] for r in v] for k, v in runs.items()}
    one, two = (statistics.median(rate[k]) if rate[k] else None for k in runs)
    return {"check": "replicas", "batch": args.batch, "repeats": args.repeats,
            "shuffle_bn_splits": args.shuffle_bn_splits,
            "one_replica_ecg_per_s": one, "two_replicas_ecg_per_s": two,
            "two_replicas_per_replica_ecg_per_s": round(two / 2, 1) if two else None,
            "speedup": round(two / one, 2) if one and two else None,
            "one_replica_all": rate["default"], "two_replicas_all": rate["mirrored"],
            "peak_rss_mb": [max((r["peak_rss_mb"] for r in runs[k]), default=None)
                            for k in runs],
            "errors": errors or None}


def stream_figures(args):
    """Write the shards (in this process: no TensorFlow model), stream them in a child."""
    keep = args.dir is not None
    path = args.dir or tempfile.mkdtemp(prefix="ecg_shards_", dir=args.tmp)
    os.makedirs(path, exist_ok=True)
    try:
        t0 = time.perf_counter()
        if not _shard_files(path):
            _write_shards(path, args.ecgs, args.distinct, args.shard_size)
        written = time.perf_counter() - t0
        r = _child("stream-child", f"--dir={path}", f"--ecgs={args.ecgs}")
        r["write_s"] = round(written, 1)
        r["distinct_ecgs"] = args.distinct
        return r
    finally:
        if not keep:
            import shutil

            shutil.rmtree(path, ignore_errors=True)


def _shard_files(path):
    import glob

    return glob.glob(os.path.join(path, "train1-*.tfrecord"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", nargs="?", default="all",
                    choices=["all", "replicas", "stream", "stream-child", "step", "run"])
    ap.add_argument("--batch", type=int, default=None,
                    help="global batch (replicas: 64, step/run: 256)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (step, replicas)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=3,
                    help="replicas: 1 and 2 replicas alternated this many times (median)")
    ap.add_argument("--precision", default="float32",
                    choices=["float32", "mixed_float16", "mixed_bfloat16"])
    ap.add_argument("--xla", action="store_true", help="jit_compile the step")
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--shuffle_bn_splits", type=int, default=2)
    ap.add_argument("--strategy", default="default", choices=["default", "mirrored"])
    ap.add_argument("--cpus", type=int, default=1, help="logical CPU devices (step)")
    ap.add_argument("--ecgs", type=int, default=None,
                    help="ECGs streamed (stream: 100000) or per epoch (run: 37000)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of run")
    ap.add_argument("--pool", type=int, default=2048, help="distinct ECGs in memory (run)")
    ap.add_argument("--distinct", type=int, default=2000, help="distinct ECGs written (stream)")
    ap.add_argument("--shard_size", type=int, default=1024, help="ECGs per shard (stream)")
    ap.add_argument("--dir", default=None, help="shard folder (stream; default: a temporary "
                    "one under --tmp, deleted after)")
    ap.add_argument("--tmp", default=None, help="where the temporary shards go (stream)")
    args = ap.parse_args()
    if args.command in ("step", "run"):
        args.batch = args.batch or 256
    else:
        args.batch = args.batch or 64
    args.ecgs = args.ecgs or (37000 if args.command == "run" else 100000)
    commands = {"step": step, "run": run, "replicas": replicas, "stream": stream_figures,
                "stream-child": stream}
    if args.command == "all":
        import tensorflow as tf

        out = {"tensorflow": tf.__version__, "cpu_count": os.cpu_count(),
               "load_average_1min": round(os.getloadavg()[0], 2),
               "replicas": replicas(args), "stream": stream_figures(args)}
        print(json.dumps(out))
        return
    print(json.dumps(commands[args.command](args)))


if __name__ == "__main__":
    main()
