"""Where a MoCo train step spends its time: the TensorFlow profiler's op-level breakdown.

Runs ``--steps`` MoCo train steps (default encoder, full 12 x 5000, batch ``--batch``, after
three warm-up steps) under ``tf.profiler.experimental``, reads the trace (XSpace protobuf)
and sums the duration of the TensorFlow ops executed on the host threads by op type. Prints a
table of the top op types (share of the summed op time; ops on parallel threads add up, so
shares, not seconds, are the figure) and one JSON object last.

    python benchmarks/profile_step.py --batch=64 --steps=5
"""
import ecg_moco_tf  # noqa: F401  (first: enables oneDNN before TensorFlow loads)
import argparse
import collections
import glob
import json
import os
import tempfile


def op_times(logdir):
    """{op type: total ps} over the TensorFlow op events of every host plane of the trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals = collections.Counter()
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                if "TraceMe" not in line.name and "tf_" not in line.name.lower() \
                        and "thread" not in line.name.lower():
                    continue
                for ev in line.events:
                    name = plane.event_metadata[ev.metadata_id].name
                    if ":" in name and "::" not in name and not name.startswith(
                            ("Iterator", "FunctionRun")):          # op "name:Type", no wrappers
                        totals[name.rsplit(":", 1)[-1].strip()] += ev.duration_ps
    return totals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args(argv)

    import keras
    import tensorflow as tf

    from ecg_moco_tf.models import MoCo, build_encoder

    keras.utils.set_random_seed(0)
    moco = MoCo(build_encoder(), queue_size=4096, seed=0, shuffle_bn_splits=2)
    moco.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = tf.random.normal([args.batch, 12, 5000], seed=0) * 0.3
    for _ in range(3):
        moco.train_on_batch((x, x + 0.01))
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(args.steps):
            moco.train_on_batch((x, x + 0.01))
        tf.profiler.experimental.stop()
        totals = op_times(logdir)
    if not totals:
        raise SystemExit("the profiler trace held no TensorFlow op events")
    total = sum(totals.values())
    top = totals.most_common(15)
    print(f"{'op type':40s} share")
    for name, ps in top:
        print(f"{name:40s} {ps / total:6.1%}")
    print(json.dumps({"batch": args.batch, "steps": args.steps,
                      "op_share": {n: round(ps / total, 4) for n, ps in top}}))


if __name__ == "__main__":
    main()
