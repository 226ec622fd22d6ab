"""tf.distribute on CPU: MirroredStrategy on the 2 logical CPUs of tests/conftest.py, a
2-process MultiWorkerMirroredStrategy cluster on localhost, mixed precision, XLA and the
one-line errors of the CLIs."""
import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ecg_moco_tf.models import MoCo, build_encoder, copy_model
from ecg_moco_tf.models.moco import cross_replica_key_order
from ecg_moco_tf.training import distribute
from tests.sizes import SHORT, TINY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_FLAGS = ["--kernel_sizes=5,3", "--filters=4,8", "--pools=8,8", "--spatial_filters=8",
              "--feature_dim=16"]


@pytest.fixture(scope="module")
def two():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) >= 2, "tests/conftest.py splits the CPU into 2 logical devices"
    return tf.distribute.MirroredStrategy(devices[:2])


@pytest.fixture(scope="module")
def cohort(small_cohort, tmp_path_factory):
    """``small_cohort`` less one negative ECG of valid2 and one of train2, so that the sets
    batched below (train2 20, valid2 6 with 3 per class, valid1 + valid2 28) split over 2
    replicas in every batch (sets that do not are refused: test_uneven_sets_are_refused)."""
    from ecg_moco_tf.data import manifest

    df = small_cohort
    drop = [df.index[(df["split"] == s) & (df["label"] == 0)][0] for s in ("valid2", "train2")]
    path = tmp_path_factory.mktemp("even") / "manifest.csv"
    return manifest.read_manifest(manifest.write_manifest(df.drop(drop), str(path)))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 12, 64)).astype("float32")
    return x, (x + 0.1 * rng.standard_normal(x.shape)).astype("float32")


def _moco(strategy, encoder, splits=1, sync_bn=None, lr=1.0):
    """MoCo with the same initial weights whatever the strategy (encoder copied, head seeded);
    SGD(lr=1): the weight change of a step is minus the gradient."""
    keras.utils.set_random_seed(5)
    with strategy.scope():
        m = MoCo(copy_model(encoder, sync_bn=sync_bn), queue_size=16, momentum=0.9, seed=0,
                 shuffle_bn_splits=splits)
        m.compile(optimizer=keras.optimizers.SGD(lr))
    return m


def _step(m, batch):
    before = [v.numpy().copy() for v in m.weights]
    logs = m.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    return logs["loss"][0], [v.numpy() - b for v, b in zip(m.weights, before)]


def _spread(variables):
    """Largest difference between the replicas' copies of ``variables``."""
    worst = 0.0
    for v in variables:
        copies = [c.numpy() for c in v.value.values]
        worst = max(worst, max(float(np.abs(c - copies[0]).max()) for c in copies))
    return worst


def test_two_replicas_with_sync_bn_make_the_single_device_step(two, batch):
    """Global batch 8 on 2 replicas (4 each) with synchronized BN = the one-device step on the
    same 8: loss, gradients (SGD lr=1 weight changes), every updated weight, the queue (keys
    of replica 0 then replica 1) and the pointer; every replica holds the same weights."""
    keras.utils.set_random_seed(0)
    enc = build_encoder(**SHORT)
    one = _moco(tf.distribute.get_strategy(), enc)
    dist = _moco(two, enc, sync_bn=True)
    assert distribute.replicas(two) == 2
    saved = [(v, v.numpy()) for v in one.key_encoder.weights if "moving" in v.path]
    expected_keys = one._keys(tf.constant(batch[1])).numpy()    # before the step, whole batch
    for v, value in saved:                                   # _keys updated the key BN
        v.assign(value)
    loss1, step1 = _step(one, batch)
    loss2, step2 = _step(dist, batch)
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    names = [v.path for v in one.weights]
    assert names == [v.path for v in dist.weights]
    grads = [i for i, v in enumerate(one.weights) if v.trainable]
    assert len(grads) > 10 and sum(np.abs(step1[i]).max() > 1e-4 for i in grads) > 10
    for name, a, b in zip(names, step1, step2):
        scale = max(1.0, float(np.abs(a).max()))
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5 * scale, err_msg=name)
    for name, a, b in zip(names, one.weights, dist.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=2e-5, err_msg=name)
    queue = dist.queue.keys.numpy()
    np.testing.assert_allclose(queue[:8], expected_keys, atol=2e-5)   # replica 0, then 1
    assert not np.allclose(queue[:4], expected_keys[4:], atol=1e-2)   # the order matters
    assert int(dist.queue.pointer.numpy()) == 8
    assert _spread(dist.weights) == 0.0              # queue, EMA, BN statistics: one value


def test_cross_replica_shuffle_bn_step_equals_one_device_step_with_the_same_groups(two, batch):
    """Shuffle-BN on 2 replicas (queries: each replica's 4; keys: 4 + 4 from the seeded
    cross-replica permutation) = the one-device step told to use those same BN groups: loss,
    gradients, weights (moving statistics aside: one device updates them once per group, two
    replicas once and average), queue. Against the one-device substitute (its own random
    groups) the loss is only close. Every replica holds the same weights."""
    keras.utils.set_random_seed(0)
    enc = build_encoder(**SHORT)
    one = _moco(tf.distribute.get_strategy(), enc, splits=2)
    same_groups = _moco(tf.distribute.get_strategy(), enc, splits=2)
    dist = _moco(two, enc, splits=2)
    seed = tf.cast(keras.random.SeedGenerator(0).next(), tf.int32)      # the step's first draw
    same_groups._bn_orders = lambda b, replicas=1: (tf.range(8),
                                                    cross_replica_key_order(8, 2, seed))
    loss1, _ = _step(one, batch)
    loss_same, step_same = _step(same_groups, batch)
    loss2, step2 = _step(dist, batch)
    assert loss2 == pytest.approx(loss_same, rel=1e-5)
    assert loss2 == pytest.approx(loss1, rel=0.25) and abs(loss2 - loss1) > 1e-4
    for v, a, b, w in zip(dist.weights, step_same, step2, same_groups.weights):
        if "moving" in v.path:
            continue
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5 * max(1, np.abs(a).max()),
                                   err_msg=v.path)
        np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=0, atol=2e-5, err_msg=v.path)
    np.testing.assert_allclose(dist.queue.keys.numpy(), same_groups.queue.keys.numpy(),
                               atol=2e-5)
    assert int(dist.queue.pointer.numpy()) == 8
    assert _spread(dist.weights) == 0.0


def test_cross_replica_shuffle_bn_keys_never_use_their_query_batch_statistics(two, batch):
    """Which samples move sample i's key (train-mode BN)? Exactly the samples of i's key group
    under the cross-replica permutation: never the samples of i's own replica (its query
    batch)."""
    keras.utils.set_random_seed(0)
    m = _moco(two, build_encoder(**SHORT), splits=2)
    order = cross_replica_key_order(8, 2, tf.constant([3, 4]))

    @tf.function
    def keys(x):
        parts = two.experimental_distribute_values_from_function(
            lambda ctx: x[ctx.replica_id_in_sync_group * 4:(ctx.replica_id_in_sync_group + 1)
                          * 4])
        out = two.run(lambda p: m._keys(p, order=order), args=(parts,))
        return tf.concat(two.experimental_local_results(out), 0)

    x = batch[1]
    base = keys(tf.constant(x)).numpy()
    moves = np.zeros((8, 8), bool)
    for j in range(8):
        shifted = x.copy()
        shifted[j] += 3.0
        moves[:, j] = np.abs(keys(tf.constant(shifted)).numpy() - base).max(1) > 1e-6
    order = order.numpy()
    for i in range(8):
        group = next(set(order[g:g + 4]) for g in (0, 4) if i in order[g:g + 4])
        assert set(np.flatnonzero(moves[i])) == group
        assert group != set(range(i // 4 * 4, i // 4 * 4 + 4))      # not its query batch


def test_cross_replica_key_order_mixes_the_replicas():
    for replicas, per in ((2, 4), (4, 2), (8, 32)):
        n = replicas * per
        for seed in range(10):
            order = cross_replica_key_order(n, replicas, tf.constant([seed, 0])).numpy()
            assert sorted(order) == list(range(n))
            for r in range(replicas):
                sources = {i // per for i in order[r * per:(r + 1) * per]}
                assert len(sources) >= min(per, replicas) >= 2        # never one replica


def test_mixed_precision_step_keeps_logits_loss_queue_float32_and_saves_float32(batch, tmp_path):
    keras.utils.set_random_seed(0)
    enc = build_encoder(**SHORT)
    with distribute.precision("mixed_float16"):
        m = MoCo(copy_model(enc, dtype="mixed_float16"), queue_size=16, momentum=0.9, seed=0)
        m.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert keras.config.dtype_policy().name == "float32"                # restored
    assert isinstance(m.optimizer, keras.optimizers.LossScaleOptimizer)
    assert m.encoder.get_layer("temporal_1_conv").compute_dtype == "float16"
    q = m._query(tf.constant(batch[0]), training=True)
    loss, logits = m._contrast(q, m._keys(tf.constant(batch[1])))
    assert q.dtype == logits.dtype == loss.dtype == m.queue.keys.dtype == tf.float32
    logs = m.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and int(m.optimizer.iterations.numpy()) == 1
    assert all(v.dtype == "float32" for v in m.encoder.weights)
    saved = copy_model(m.encoder, dtype="float32")
    saved.save(tmp_path / "enc.keras")
    back = keras.saving.load_model(tmp_path / "enc.keras")
    assert {layer.dtype_policy.name for layer in back.layers} == {"float32"}
    out16 = np.asarray(m.encoder(batch[0]), np.float32)
    np.testing.assert_allclose(back.predict(batch[0], verbose=0), out16,
                               atol=0.05 * np.abs(out16).max())


def test_xla_step_matches_plain_step(batch):
    """jit_compile=True computes the same steps (without shuffle-BN: XLA's stateless random
    kernels draw other, still seeded, shuffle-BN groups)."""
    keras.utils.set_random_seed(0)
    enc = build_encoder(**SHORT)
    losses = []
    for jit in (False, True):
        keras.utils.set_random_seed(5)
        m = MoCo(copy_model(enc), queue_size=16, momentum=0.9, seed=0, shuffle_bn_splits=1)
        m.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit)
        losses.append([m.train_on_batch(batch, return_dict=True)["loss"] for _ in range(2)])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


# ---------------------------------------------------------------- pretrain / fine-tune API
def test_pretrain_and_finetune_under_mirrored_strategy(cohort, two, tmp_path):
    """The Python API with strategy=: pretraining records the strategy and saves a plain
    float32 encoder; fine-tuning's validation loss and AUC match the one-device run (per-replica
    batch norms make the runs differ a little)."""
    from ecg_moco_tf.data import experiment_view
    from ecg_moco_tf.training.finetune import FinetuneConfig, finetune
    from ecg_moco_tf.training.pretrain import PretrainConfig, pretrain

    view = experiment_view(cohort, "proposed")
    cfg = PretrainConfig(epochs=1, batch_size=8, queue_size=16, momentum=0.9, verbose=0,
                         monitor_every=0)
    keras.utils.set_random_seed(0)
    moco, hist = pretrain(view["pretrain_train"], view["pretrain_valid"], str(tmp_path / "pre"),
                          cfg, encoder=build_encoder(**TINY), strategy=two)
    saved = json.loads((tmp_path / "pre" / "pretrain_config.json").read_text())
    assert saved["replicas"] == 2 and "MirroredStrategy" in saved["strategy"]
    assert np.isfinite(hist["loss"]).all() and _spread(moco.weights) == 0.0
    enc = keras.saving.load_model(tmp_path / "pre" / "encoder.keras")
    x = np.random.default_rng(0).normal(0, 0.5, (2, 12, 5000)).astype("float32")
    np.testing.assert_allclose(enc.predict(x, verbose=0), moco.encoder(x), atol=1e-5)

    ft = FinetuneConfig(learning_rates=(1e-3,), epochs=1, batch_size=8, verbose=0)
    runs = [finetune(view["train"], view["valid"], enc, ft, strategy=s)
            for s in (None, two)]
    one, dist = (r.sweep.iloc[0] for r in runs)
    assert dist["best_val_loss"] == pytest.approx(one["best_val_loss"], rel=0.1)
    assert dist["best_val_auc"] == pytest.approx(one["best_val_auc"], abs=0.1)


def test_finetune_in_mixed_float16_with_two_optimizers_returns_a_float32_model(small_cohort,
                                                                              tmp_path):
    """mixed_float16 fine-tuning, encoder at half the head's rate (two optimizers, each with
    its own loss scale): the returned and saved classifier computes in float32."""
    from ecg_moco_tf.data import experiment_view
    from ecg_moco_tf.training.finetune import FinetuneConfig, finetune, predict

    view = experiment_view(small_cohort, "baseline_unpretrained")
    ft = FinetuneConfig(learning_rates=(1e-3,), epochs=1, batch_size=8, verbose=0,
                        mixed_precision="mixed_float16", encoder_lr_multiplier=0.5)
    res = finetune(view["train"], view["valid"], None, ft, out_dir=str(tmp_path),
                   encoder_kwargs=TINY)
    assert np.isfinite(res.sweep["best_val_loss"]).all()
    assert keras.config.dtype_policy().name == "float32"
    back = keras.saving.load_model(tmp_path / "classifier.keras")
    for model in (res.model, back):
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    p = predict(back, view["test"])["probability"]
    np.testing.assert_allclose(p, predict(res.model, view["test"])["probability"], atol=1e-6)
    assert ((p > 0) & (p < 1)).all()


def test_three_experiments_under_mirrored_strategy_match_one_device(cohort, two, tmp_path,
                                                                     monkeypatch):
    """The paper's three experiments on 2 replicas give the one-device predictions, validation
    losses and AUCs. Two differences are taken out, so that what is compared is the
    distribution itself (split batches, all-reduced gradients, summed metric states): batch
    norms in training mode (each replica normalizes its own half batch: linear-probe mode
    here) and the training order (Keras's distributed input iterates the dataset once more
    before epoch 1, so a reshuffling dataset gives epoch k the order of epoch k + 1: no
    shuffle here). Both are covered, with tolerances, by
    test_pretrain_and_finetune_under_mirrored_strategy. What remains: a last batch of 3
    (baseline_full_labels: 87 = 7 x 12 + 3) is split 2 + 1 and Keras averages the two
    replicas' means (one device: the mean of 3), hence the tolerance."""
    from ecg_moco_tf.data import pipeline
    from ecg_moco_tf.evaluation import evaluate
    from ecg_moco_tf.training.experiments import EXPERIMENTS, run_experiment
    from ecg_moco_tf.training.finetune import FinetuneConfig

    stream = pipeline.manifest_dataset
    monkeypatch.setattr(pipeline, "manifest_dataset",
                        lambda df, shuffle=False, **kw: stream(df, shuffle=False, **kw))
    keras.utils.set_random_seed(0)
    build_encoder(**TINY).save(tmp_path / "enc.keras")        # the "pretrained" encoder
    ft = FinetuneConfig(learning_rates=(1e-2,), epochs=1, batch_size=12, verbose=0,
                        freeze_encoder=True)       # every last batch splits over 2 replicas
    for name in EXPERIMENTS:
        enc = str(tmp_path / "enc.keras") if name == "proposed" else None
        runs = [run_experiment(cohort, name, str(tmp_path / label), ft, enc, TINY,
                               strategy=s)
                for label, s in (("one", None), ("two", two))]
        (p1, sweep1, _), (p2, sweep2, _) = runs
        assert list(p1["record"]) == list(p2["record"])
        assert p1["probability"].std() > 1e-3                      # it learnt something
        np.testing.assert_allclose(p2["probability"], p1["probability"], atol=2e-3,
                                   err_msg=name)
        for col in ("best_val_loss", "best_val_auc"):
            assert sweep2[col][0] == pytest.approx(sweep1[col][0], rel=1e-2, abs=1e-4), name
        m1, m2 = (evaluate(p["label"].astype(int), p["probability"], p["patient_id"],
                           n_boot=10)["auc"] for p in (p1, p2))
        assert m2 == pytest.approx(m1, abs=1e-6), name


def test_library_errors_say_what_to_set(two):
    with pytest.raises(distribute.DistributeError, match=r"batch_size=9 is the global batch.*"
                       r"2 replicas.*set batch_size=8 or 10"):
        distribute.check_global_batch(9, two)
    with pytest.raises(distribute.DistributeError, match="jit_compile runs on one replica"):
        distribute.check_jit(True, two)
    with pytest.raises(distribute.DistributeError, match="not one of default, mirrored"):
        distribute.make_strategy("horovod")
    with pytest.raises(distribute.DistributeError, match="mixed_precision"):
        distribute.check_precision("float16")
    from ecg_moco_tf.training.pretrain import PretrainConfig, check_distribution

    with pytest.raises(ValueError, match="at least 2 ECGs per replica"):
        check_distribution(PretrainConfig(batch_size=2, shuffle_bn_splits=2), two)
    assert check_distribution(PretrainConfig(batch_size=2, sync_bn=True), two) == 1


def test_uneven_sets_are_refused(small_cohort, two):
    """What Keras and oneDNN cannot run on 2 replicas is refused before training, with a batch
    size that works: a set smaller than one batch with an odd count (Keras's AddN of unequal
    per-replica batches), a last batch of 1 (oneDNN), on the validation set; training drops
    its last batch of 1, so only the first rule applies to it."""
    from ecg_moco_tf.data import experiment_view
    from ecg_moco_tf.training.finetune import FinetuneConfig, finetune

    check = distribute.check_last_batch
    with pytest.raises(distribute.DistributeError,
                       match=r"valid has 7 ECGs: fewer than one global batch of 8.*"
                             r"split evenly over the 2 replicas.*set batch_size=4$"):
        check(7, 8, two, "valid")
    with pytest.raises(distribute.DistributeError,
                       match=r"valid has 9 ECGs: the last global batch of 1 leaves 1 of the 2 "
                             r"replicas an empty batch.*set batch_size=6 \(or TF_ENABLE_ONEDNN"):
        check(9, 8, two, "valid")
    with pytest.raises(distribute.DistributeError, match="train has 7 ECGs.*batch_size=6$"):
        check(7, 8, two, "train", last_dropped=True)
    with pytest.raises(distribute.DistributeError, match="use a multiple of 2 ECGs"):
        check(3, 8, two, "valid")               # 2 leaves 1, 4 or more: 3 is odd
    for n in (8, 6, 12):                                      # these run
        check(n, 8, two, "valid")
    check(9, 8, two, "train", last_dropped=True)
    check(7, 8, tf.distribute.get_strategy(), "valid")      # one device: anything runs
    view = experiment_view(small_cohort, "proposed")            # valid2: 7 ECGs
    with pytest.raises(distribute.DistributeError, match="valid has 7 ECGs"):
        finetune(view["train"], view["valid"], None,
                 FinetuneConfig(learning_rates=(1e-3,), epochs=1, batch_size=8, verbose=0),
                 encoder_kwargs=TINY, strategy=two)


def test_worker_dir_chief_and_nested_paths():
    class Resolver:
        def __init__(self, kind, index, chief=False):
            self.task_type, self.task_id, self.chief = kind, index, chief

        def cluster_spec(self):
            spec = {"worker": ["a:1", "b:1"], **({"chief": ["c:1"]} if self.chief else {})}
            return tf.train.ClusterSpec(spec)

    class Strategy:
        def __init__(self, resolver):
            self.cluster_resolver = resolver

    w0, w1 = Strategy(Resolver("worker", 0)), Strategy(Resolver("worker", 1))
    assert distribute.is_chief(w0) and not distribute.is_chief(w1)
    assert not distribute.is_chief(Strategy(Resolver("worker", 0, chief=True)))
    assert distribute.is_chief(tf.distribute.get_strategy())
    assert distribute.worker_dir("runs/x", w0) == "runs/x"
    mine = distribute.worker_dir("runs/x", w1)
    assert mine == os.path.join("runs/x", "workers", "worker-1")
    inner = os.path.join(mine, "pretrain")              # reproduce's <out>/pretrain
    assert distribute.worker_dir(inner, w1) == inner
    assert distribute.workers(w1) == 2 and distribute.workers(tf.distribute.get_strategy()) == 1


# ------------------------------------------------------------------------------ CLI
def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(tf_config=None):
    env = {k: v for k, v in os.environ.items()
           if k != "TF_CONFIG" and not k.startswith("SLURM_")}
    env["PYTHONPATH"] = ROOT
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _cli(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "ecg_moco_tf.cli.main", *args], cwd=ROOT,
                            env=env or _env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(p, timeout):
    """(stdout, stderr) of a finished process; killed (and the test failed) after timeout."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"{p.args} ran over {timeout} s:\n{err[-2000:]}")


def _run(args, env=None, timeout=300):
    p = _cli(args, env)
    out, err = _wait(p, timeout)
    return p.returncode, out, err


def _cluster(ports, index):
    return {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": index}}


def test_cli_bad_distribution_settings_are_one_line_and_exit_2(small_cohort, tmp_path):
    manifest = os.path.join(small_cohort.attrs["root"], "manifest.csv")
    cases = [
        (["pretrain", f"--manifest={manifest}", "--strategy=horovod"], None,
         "strategy='horovod' is not one of default, mirrored, multi_worker, tpu"),
        (["finetune", f"--manifest={manifest}", "--experiment=baseline_unpretrained",
          "--strategy=multi_worker"], None, "strategy=multi_worker needs the cluster: set "
                                            "TF_CONFIG"),
        (["reproduce", "--mixed_precision=float16"], None,
         "mixed_precision='float16' is not one of float32, mixed_float16, mixed_bfloat16"),
        (["pretrain", f"--manifest={manifest}", "--strategy=multi_worker", "--batch_size=9"],
         _env(_cluster(_free_ports(2), 0)),
         "--batch_size=9 is the global batch and must be a multiple of the 2 replicas of "
         "MultiWorkerMirroredStrategy: set --batch_size=8 or 10"),
    ]
    for args, env, message in cases:
        code, out, err = _run(args + [f"--out={tmp_path}/o"], env, timeout=120)
        lines = err.strip().splitlines()
        assert code == 2, (args, err[-2000:])
        assert message in lines[-1] and "Traceback" not in err, (args, err[-2000:])
        assert not os.path.exists(tmp_path / "o")


@pytest.mark.slow
def test_multi_worker_cli_two_processes_pretrain_from_shards_and_finetune(cohort, tmp_path):
    """Two workers on localhost (TF_CONFIG, free ports): pretraining from TFRecord shards
    (FILE auto-sharding), from the manifest (DATA auto-sharding, with the representation
    monitor) and fine-tuning; the chief writes to --out, worker 1 to
    --out/workers/worker-1, and both end with the same weights."""
    from ecg_moco_tf.data.pipeline import write_tfrecords

    root = cohort.attrs["root"]
    write_tfrecords(cohort, str(tmp_path / "shards"), shard_size=16, progress=False)
    assert len(list((tmp_path / "shards").glob("train1-*.tfrecord"))) >= 2
    manifest = os.path.join(root, "manifest.csv")
    jobs = {
        "pretrain": ["pretrain", f"--manifest={manifest}", f"--shards={tmp_path}/shards",
                     f"--out={tmp_path}/pre", "--epochs=1", "--batch_size=8",
                     "--queue_size=16", "--momentum=0.9", "--monitor_every=0",
                     "--select_encoder=last", "--nocache"],
        "pretrain_manifest": ["pretrain", f"--manifest={manifest}", f"--out={tmp_path}/prm",
                              "--epochs=1", "--batch_size=8", "--queue_size=16",
                              "--momentum=0.9", "--monitor_every=1", "--select_encoder=last"],
        "finetune": ["finetune", f"--manifest={manifest}", "--experiment=proposed",
                     f"--encoder={tmp_path}/pre/encoder.keras", f"--out={tmp_path}/ft",
                     "--learning_rates=1e-3", "--epochs=1", "--batch_size=8"],
    }
    for job, args in jobs.items():
        ports = _free_ports(2)
        tiny = [] if job == "finetune" else TINY_FLAGS      # an encoder fixes the architecture
        procs = [_cli(args + ["--strategy=multi_worker"] + tiny,
                      _env(_cluster(ports, i))) for i in range(2)]
        try:
            results = [_wait(p, 600) for p in procs]
        finally:
            for p in procs:              # a worker left waiting for a failed peer
                if p.poll() is None:
                    p.kill()
        for p, (out, err) in zip(procs, results):
            assert p.returncode == 0, (job, err[-3000:])
        assert "MultiWorkerMirroredStrategy, 2 replica(s)" in results[0][0]
    x = np.random.default_rng(0).normal(0, 0.5, (4, 12, 5000)).astype("float32")
    for sub, name in (("pre", "encoder.keras"), ("prm", "encoder.keras"),
                      ("ft", "classifier.keras")):
        chief = keras.saving.load_model(tmp_path / sub / name)
        worker = keras.saving.load_model(tmp_path / sub / "workers" / "worker-1" / name)
        for a, b in zip(chief.weights, worker.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
        np.testing.assert_array_equal(chief.predict(x, verbose=0), worker.predict(x, verbose=0))
    saved = json.loads((tmp_path / "pre" / "pretrain_config.json").read_text())
    assert saved["replicas"] == 2 and saved["num_train"] == int(
        (cohort["split"] == "train1").sum())
    assert (tmp_path / "ft" / "metrics.json").exists()
    log = (tmp_path / "prm" / "pretrain_log.csv").read_text()
    assert "probe_auc" in log.splitlines()[0], log


def test_shuffle_bn_groups_are_checked_only_where_they_apply():
    """A batch that the shuffle-BN groups do not divide is an error on one device, but not
    with --sync_bn (no groups) or across replicas (one group per replica)."""
    from ecg_moco_tf.training.pretrain import PretrainConfig, check_config, check_distribution

    odd = PretrainConfig(batch_size=6, queue_size=8, shuffle_bn_splits=4)
    with pytest.raises(ValueError, match="batch_size=6 must be a multiple of "
                                         "shuffle_bn_splits=4"):
        check_distribution(odd, tf.distribute.get_strategy())
    sync = PretrainConfig(batch_size=6, queue_size=8, shuffle_bn_splits=4, sync_bn=True)
    assert check_distribution(sync, tf.distribute.get_strategy()) == 1
    check_config(sync, 100, 20)                  # no second, replica-blind group check
    check_config(odd, 100, 20)
