"""MoCo's memory of past keys: a FIFO of K L2-normalized keys in a non-trainable variable."""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable("ecg_moco_tf")
class KeyQueue(keras.layers.Layer):
    """Queue of ``size`` keys of width ``dim`` with a write pointer; both are model state.

    The queue starts as random unit vectors. :meth:`enqueue` writes a batch at the pointer,
    wrapping around (K need not be a multiple of the batch), and advances the pointer. Both
    variables are saved with the model and restored by checkpoints.

    Args:
        size: number of keys K.
        dim: key width (= projection output width).
        seed: seed of the initial random keys.

    Example:
        >>> q = KeyQueue(4096, 128); q.enqueue(keys)   # keys (B, 128), unit norm
    """

    def __init__(self, size, dim, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.size, self.dim, self.seed = int(size), int(dim), seed
        init = keras.random.normal((self.size, self.dim), seed=seed)
        init = init / keras.ops.norm(init, axis=1, keepdims=True)
        self.keys = self.add_weight(shape=(self.size, self.dim), initializer=lambda *a, **k: init,
                                    trainable=False, name="keys",
                                    aggregation="only_first_replica")
        self.pointer = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                       trainable=False, name="pointer",
                                       aggregation="only_first_replica")
        self.built = True

    def enqueue(self, keys, applied=None):
        """Write ``keys`` (B, dim) at the pointer (mod K) and advance the pointer by B.

        ``applied``: a boolean scalar (tensor); where it is false queue and pointer keep their
        values (a training step the optimizer skipped). A select, so it works in graph mode
        and in a ``tf.distribute`` replica context."""
        keys = tf.convert_to_tensor(keys, self.keys.dtype)
        b = tf.shape(keys, out_type=tf.int64)[0]
        keys = keys[-self.size:]                       # a batch larger than K keeps its last K
        idx = (self.pointer + tf.maximum(b - self.size, 0) + tf.range(
            tf.shape(keys, out_type=tf.int64)[0])) % self.size
        new_keys = tf.tensor_scatter_nd_update(self.keys, idx[:, None], keys)
        new_pointer = (self.pointer + b) % self.size
        if applied is not None:
            new_keys = tf.where(applied, new_keys, tf.convert_to_tensor(self.keys))
            new_pointer = tf.where(applied, new_pointer, tf.convert_to_tensor(self.pointer))
        self.keys.assign(new_keys)
        self.pointer.assign(new_pointer)

    def call(self, inputs=None):
        return self.keys

    def get_config(self):
        return {**super().get_config(), "size": self.size, "dim": self.dim, "seed": self.seed}
