"""Training: MoCo pretraining, fine-tuning, the paper's experiments."""
from .. import console

console.import_tensorflow_quietly()      # before TensorFlow: no start-up notices
