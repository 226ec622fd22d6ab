"""Models: the ECG encoder, MoCo and its parts, the downstream classifier.

Importing this package registers every custom layer and model of the project with Keras, so
``.keras`` files that contain them load; :func:`load_model` does that for you.
"""
from .. import console

console.import_tensorflow_quietly()      # before TensorFlow: no start-up notices
from .batchnorm import FusedBatchNormalization
from .clone import CopyError, copy_model
from .encoder import build_encoder, adapt_normalization, encoder_flops
from .heads import projection_head
from .losses import info_nce
from .momentum import momentum_update
from .queue import KeyQueue
from .moco import MoCo
from .normalization import LeadNormalization


def single_input_graph(model):
    """True for a functional or Sequential Keras model with one input; False for a subclassed
    one (MoCo), whose layer graph Keras does not know."""
    try:
        return len(model.inputs) == 1 and len(model.outputs) >= 1
    except (AttributeError, TypeError):
        return False


def load_model(path, **kwargs):
    """``keras.saving.load_model`` with every ecg-moco-tf layer registered (encoder layers,
    MoCo, the augmentation layers), so any model the project or its README makes loads."""
    import keras

    from .. import augment  # noqa: F401  (registers RandomAugment and the transforms)

    return keras.saving.load_model(path, **kwargs)
