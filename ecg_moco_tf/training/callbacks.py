"""Callbacks shared by pretraining and fine-tuning."""
import math
import os
import time

import keras


class CSVLog(keras.callbacks.CSVLogger):
    """``CSVLogger`` with epochs counted from 1, as on the console ("Epoch 1/30"), in
    ``SaveBest.best_epoch`` and in ``pretrain_config.json``."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def log_epochs(log):
    """The 1-based epochs of a CSV log (DataFrame); logs written before :class:`CSVLog`
    counted from 0 and are shifted."""
    e = log["epoch"].astype(int)
    return e + 1 if len(e) and e.iloc[0] == 0 else e


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch in ``times``; ``report(epoch, seconds, logs)``, if given,
    after each (e.g. a progress line)."""

    def __init__(self, report=None):
        super().__init__()
        self.times, self.report = [], report

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t0)
        if self.report:
            self.report(epoch, self.times[-1], logs or {})


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
    """Save ``get_model()`` to ``path`` (.keras) whenever ``monitor`` reaches a new best
    (``mode`` "min": lowest, "max": highest; NaN never counts), or at every epoch end when
    ``monitor`` is None (keeps the last epoch's model).

    ``best``: the monitored value of the saved epoch (None with ``monitor=None``);
    ``best_epoch``: that epoch (1-based); ``best_logs``: all its logs.
    ``log_csv``: the CSV log of the run being resumed, to start from its best so far (pass it
    only when resuming: a finished run's log would hold back the new run's encoder)."""

    def __init__(self, path, get_model, monitor="val_loss", log_csv=None, mode="min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        self.path, self.get_model, self.monitor, self.mode = path, get_model, monitor, mode
        self.best = None if monitor is None else (math.inf if mode == "min" else -math.inf)
        self.best_epoch, self.best_logs = None, {}
        if log_csv and os.path.exists(log_csv) and os.path.exists(path):   # resumed run
            import pandas as pd

            log = pd.read_csv(log_csv)
            if monitor is None and len(log):
                i = log.index[-1]
            else:
                col = log[monitor].dropna() if monitor in log else log.iloc[:0, :0]
                i = None if not len(col) else (col.idxmin() if mode == "min" else col.idxmax())
            if i is not None:
                self.best_logs = log.loc[i].drop("epoch").to_dict()
                self.best_epoch = int(log_epochs(log)[i])
                if monitor is not None:
                    self.best = float(log[monitor][i])

    def _better(self, value):
        if value is None or not math.isfinite(float(value)):
            return False
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor is None or self._better(logs.get(self.monitor)):
            if self.monitor is not None:
                self.best = float(logs[self.monitor])
            self.best_epoch, self.best_logs = epoch + 1, dict(logs)
            self.get_model().save(self.path)
