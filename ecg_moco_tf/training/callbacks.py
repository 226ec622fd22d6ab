"""Callbacks shared by pretraining and fine-tuning."""
import math
import os

import keras


class StopOnNaN(keras.callbacks.Callback):
    """Stop training at the first NaN/Inf loss and remember where, with advice (TerminateOnNaN
    with a message that says what to do)."""

    def __init__(self, advice):
        super().__init__()
        self.advice, self.where = advice, None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"epoch {self._epoch + 1}, batch {batch + 1}: loss = {loss}"
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def check(self):
        if self.where:
            raise FloatingPointError(f"training stopped, loss not finite at {self.where}. "
                                     f"{self.advice}")


class SaveBest(keras.callbacks.Callback):
    """Save ``get_model()`` to ``path`` (.keras) whenever ``monitor`` reaches a new minimum.

    ``log_csv``: the CSV log of the run being resumed, to start from its best so far (pass it
    only when resuming: a finished run's log would hold back the new run's encoder)."""

    def __init__(self, path, get_model, monitor="val_loss", log_csv=None):
        super().__init__()
        self.path, self.get_model, self.monitor = path, get_model, monitor
        self.best, self.best_epoch = math.inf, None
        if log_csv and os.path.exists(log_csv) and os.path.exists(path):   # resumed run
            import pandas as pd

            log = pd.read_csv(log_csv)
            if monitor in log and len(log):
                i = int(log[monitor].idxmin())
                self.best, self.best_epoch = float(log[monitor][i]), int(log["epoch"][i]) + 1

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            self.get_model().save(self.path)
