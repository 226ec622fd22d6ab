"""Plots and explanations."""
from .. import console

console.import_tensorflow_quietly()      # before TensorFlow: no start-up notices
