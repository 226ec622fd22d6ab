"""Keep TensorFlow's native notices off the console (CUDA stub, oneDNN, absl start-up, the TFLite
converter's and LiteRT's prints), which ``TF_CPP_MIN_LOG_LEVEL`` does not reach: they are
written by C++ straight to the process's stdout/stderr. :func:`native_quiet` sends both file
descriptors to a temporary file for the duration of a block and replays it if the block
raises, so nothing is lost when something fails. ``ECG_MOCO_DEBUG=1`` (set by the CLI's
``--verbosity=debug``) turns it off.
"""
import contextlib
import logging
import os
import sys
import tempfile


def debug():
    return os.environ.get("ECG_MOCO_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def native_quiet():
    """Run the block with fd 1 and 2 captured; replay the capture on stderr if it raises."""
    if debug():
        yield
        return
    for s in (sys.stdout, sys.stderr):
        s.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            for s in (sys.stdout, sys.stderr):
                s.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if not ok:
                tmp.seek(0)
                sys.stderr.write(tmp.read().decode(errors="replace"))


def import_tensorflow_quietly():
    """Import TensorFlow (and Keras) without the native start-up notices, also those of the
    first look for a GPU (cuInit). The package's modules that use TensorFlow call this before
    importing it, so a Python session gets no notices either."""
    if "tensorflow" in sys.modules:
        return
    with native_quiet():
        import keras  # noqa: F401
        import tensorflow

        tensorflow.config.list_physical_devices()


class _NoRetracingNotice(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <function> triggered tf.function
    retracing" warning: the commands build a new model per experiment, learning rate and seed
    on purpose, so the warning is expected and says nothing the user can act on."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def hide_retracing_notices():
    """Install the filter on TensorFlow's Python logger (which also feeds absl's copy)."""
    import tensorflow as tf

    logger = tf.get_logger()
    if not any(isinstance(f, _NoRetracingNotice) for f in logger.filters):
        logger.addFilter(_NoRetracingNotice())
