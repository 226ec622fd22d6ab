"""Projection head of MoCo v2: Dense -> ReLU -> Dense (identity in MoCo v1)."""
import keras


def projection_head(input_dim, hidden_dim=128, output_dim=128, name="projection_head"):
    """MLP head mapping encoder features to the contrastive space.

    ``hidden_dim=0`` gives MoCo v1 (no head: identity). Output width must equal the queue width.

    Example:
        >>> head = projection_head(128, 128, 128)
    """
    inp = keras.Input((input_dim,), name=f"{name}_in")
    if hidden_dim:
        x = keras.layers.Dense(hidden_dim, activation="relu", name=f"{name}_hidden")(inp)
        out = keras.layers.Dense(output_dim, name=f"{name}_out")(x)
    else:
        if output_dim != input_dim:
            raise ValueError("MoCo v1 (no head) needs output_dim == encoder feature size")
        out = keras.layers.Identity(name=f"{name}_identity")(inp)
    return keras.Model(inp, out, name=name)
