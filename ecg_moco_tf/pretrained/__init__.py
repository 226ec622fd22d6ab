"""Pretrained encoders shipped with the package, loadable by name (keras-hub style).

Each lives in ``ecg_moco_tf/pretrained/<name>/`` (``encoder.keras`` + ``MODEL_CARD.md`` with
data, settings, monitor curve, license and citation; the pretraining run's config and log);
``saved_models/<name>`` in a source checkout links there.

    >>> encoder = ecg_moco_tf.load_pretrained("ptbxl-pool")

On the command line, ``--encoder=ptbxl-pool`` (``finetune``, ``reproduce``) takes a name or a
file.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = {
    "ptbxl-pool": ("MoCo v2 encoder pretrained on 1,245 unlabelled PTB-XL ECGs of strat_folds "
                   "1-8, no patient of ptbxl-subset, last epoch (CC BY 4.0)"),
}


def names():
    """Names of the shipped encoders."""
    return sorted(SHIPPED)


def card(name):
    """Path of a shipped encoder's MODEL_CARD.md."""
    return os.path.join(_folder(name), "MODEL_CARD.md")


def _folder(name):
    if name not in SHIPPED:
        raise ValueError(f"no shipped encoder named {name!r}; shipped: {', '.join(names())}")
    return os.path.join(HERE, name)


def encoder_path(name_or_path, arg="encoder"):
    """A ``.keras`` file path for a file path or a shipped name; ValueError (one line naming
    ``arg``, the argument or flag that gave it, and listing the shipped names) otherwise."""
    if os.path.exists(name_or_path):
        return name_or_path
    if name_or_path in SHIPPED:
        return os.path.join(_folder(name_or_path), "encoder.keras")
    raise ValueError(f"{arg}={name_or_path!r} is neither a file nor a shipped encoder "
                     f"(shipped: {', '.join(names())})")


def load_pretrained(name):
    """The shipped encoder ``name`` (or a ``.keras`` path) as a Keras model, with the
    project's layers registered. Its card: :func:`card`."""
    from ..models import load_model

    return load_model(encoder_path(name, arg="load_pretrained: name"))
