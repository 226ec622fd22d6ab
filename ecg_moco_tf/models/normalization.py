"""Per-lead data-set normalization whose ``call`` reads its variables."""
import keras
import numpy as np


@keras.saving.register_keras_serializable("ecg_moco_tf")
class LeadNormalization(keras.layers.Layer):
    """(x - mean) / sqrt(variance) per lead, with mean and variance of the *training set*.

    Keras 3's ``Normalization`` turns its adapted statistics into constants
    (``finalize_state``), so a copy made with ``clone_model`` + ``set_weights`` keeps mean 0 and
    variance 1 and sees raw millivolts. This layer keeps ``mean`` and ``variance`` as
    non-trainable weights and reads them in every call: copies, checkpoints, EMA key encoders
    and exports all normalize alike. Amplitude stays diagnostic (no per-ECG scaling).

    Args:
        axis: the lead axis of the (batch, leads, samples) input.
        epsilon: added to the variance (flat leads in the training set).

    Example:
        >>> norm = LeadNormalization()
        >>> norm.adapt(train_signals)          # array (n, 12, 5000) or tf.data of batches
        >>> z = norm(signals)
    """

    def __init__(self, axis=1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon = axis, epsilon

    def build(self, input_shape):
        n = int(input_shape[self.axis])
        self.mean = self.add_weight(shape=(n,), initializer="zeros", trainable=False,
                                    name="mean")
        self.variance = self.add_weight(shape=(n,), initializer="ones", trainable=False,
                                        name="variance")

    def adapt(self, data):
        """Set mean and variance from ``data``: an array, or an iterable / tf.data of batches
        (a batch may be a (signal, ...) tuple or a dict with 'signal')."""
        batches = [data] if isinstance(data, np.ndarray) else data
        total = total_sq = count = 0.0
        for batch in batches:
            if isinstance(batch, dict):
                batch = batch["signal"]
            elif isinstance(batch, (tuple, list)):
                batch = batch[0]
            x = np.moveaxis(np.asarray(batch, np.float64), self.axis, 0)
            x = x.reshape(x.shape[0], -1)
            total, total_sq = total + x.sum(1), total_sq + (x * x).sum(1)
            count += x.shape[1]
        if not count:
            raise ValueError("LeadNormalization.adapt got no data")
        if not self.built:
            self.build((None,) * self.axis + (len(total),))
        mean = total / count
        self.mean.assign(mean.astype("float32"))
        self.variance.assign(np.maximum(total_sq / count - mean * mean, 0).astype("float32"))

    def call(self, x):
        shape = [1] * len(x.shape)
        shape[self.axis] = -1
        mean = keras.ops.reshape(self.mean, shape)
        var = keras.ops.reshape(self.variance, shape)
        return (x - mean) / keras.ops.sqrt(var + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
