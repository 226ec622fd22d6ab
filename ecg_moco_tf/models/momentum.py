"""Momentum (EMA) update of the key network from the query network."""
import tensorflow as tf


def momentum_update(key_variables, query_variables, momentum, applied=None):
    """key <- momentum * key + (1 - momentum) * query, for every pair of variables.

    ``applied``: a boolean scalar (tensor); where it is false every key variable keeps its
    value (a step the optimizer skipped, e.g. non-finite gradients under loss scaling). A
    select, not a ``tf.cond``: it works in graph mode and in a ``tf.distribute`` replica
    context (where a cond around assignments that merge across replicas does not)."""
    if len(key_variables) != len(query_variables):
        raise ValueError("key and query networks differ in their number of variables")
    for kv, qv in zip(key_variables, query_variables):
        new = momentum * kv + (1.0 - momentum) * qv
        if applied is not None:
            new = tf.where(applied, new, tf.convert_to_tensor(kv))
        kv.assign(new)
