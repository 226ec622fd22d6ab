"""``--deterministic`` (issue 22, section 5): a flag of the training commands, off by default,
that turns TensorFlow's op determinism on before any training."""
import contextlib

import pytest
import tensorflow as tf
from absl import flags
from tensorflow.python.framework import config as tf_config

from ecg_moco_tf.cli import common
from tests.test_cli_config import parsed


@contextlib.contextmanager
def _determinism_restored():
    was = tf_config.is_op_determinism_enabled()
    try:
        yield
    finally:
        (tf_config.enable_op_determinism if was else tf_config.disable_op_determinism)()


@pytest.mark.parametrize("cmd", ["pretrain", "finetune", "reproduce"])
def test_deterministic_flag_defaults_off_and_documents_cpu_only(cmd):
    with parsed(cmd):
        flag = flags.FLAGS["deterministic"]
        assert flag.value is False and flag.default is False
        assert "CPU only" in flag.help and "GPU" in flag.help and "speed" in flag.help
    with parsed(cmd, "--deterministic"):
        assert flags.FLAGS.deterministic is True


def test_strategy_from_flags_enables_op_determinism_only_when_asked(capsys):
    with _determinism_restored():
        tf_config.disable_op_determinism()
        with parsed("pretrain"):
            common.strategy_from_flags("batch_size")
            assert not tf_config.is_op_determinism_enabled()
        with parsed("pretrain", "--deterministic"):
            common.strategy_from_flags("batch_size")
            assert tf_config.is_op_determinism_enabled()
            if hasattr(tf.config.experimental, "is_op_determinism_enabled"):   # public API
                assert tf.config.experimental.is_op_determinism_enabled()
        assert "deterministic ops" in capsys.readouterr().out
        assert common.enable_determinism(False) is False
