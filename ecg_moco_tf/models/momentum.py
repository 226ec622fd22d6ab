"""Momentum (EMA) update of the key network from the query network."""


def momentum_update(key_variables, query_variables, momentum):
    """key <- momentum * key + (1 - momentum) * query, for every pair of variables."""
    if len(key_variables) != len(query_variables):
        raise ValueError("key and query networks differ in their number of variables")
    for kv, qv in zip(key_variables, query_variables):
        kv.assign(momentum * kv + (1.0 - momentum) * qv)
