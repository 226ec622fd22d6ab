"""InfoNCE loss of MoCo."""
import tensorflow as tf


def info_nce(q, k, queue, temperature=0.2):
    """InfoNCE of L2-normalized queries ``q`` (B, D), keys ``k`` (B, D), negatives ``queue``
    (K, D).

    logits = [q.k, q.queue^T] / temperature, shape (B, 1 + K): the positive is column 0.
    Returns (per-example loss (B,), logits).
    """
    pos = tf.reduce_sum(q * k, axis=1, keepdims=True)
    neg = tf.matmul(q, queue, transpose_b=True)
    logits = tf.concat([pos, neg], axis=1) / temperature
    labels = tf.zeros(tf.shape(q)[:1], tf.int32)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return loss, logits
