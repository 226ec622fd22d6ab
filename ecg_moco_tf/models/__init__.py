"""Models: the ECG encoder, MoCo and its parts, the downstream classifier."""
from .batchnorm import FusedBatchNormalization
from .clone import CopyError, copy_model
from .encoder import build_encoder, adapt_normalization, encoder_flops
from .heads import projection_head
from .losses import info_nce
from .momentum import momentum_update
from .queue import KeyQueue
from .moco import MoCo
from .normalization import LeadNormalization
