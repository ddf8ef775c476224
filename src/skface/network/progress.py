"""A Keras callback that shows training progress as one tqdm bar over epochs."""

from __future__ import annotations

import keras
from tqdm.auto import tqdm

# Short names for the progress bar; the full names stay in ``history_``.
_SHOWN = {
    "loss": "loss",
    "age_mae": "age_mae",
    "gender_accuracy": "gender_acc",
    "val_loss": "val_loss",
    "val_age_mae": "val_age_mae",
    "val_gender_accuracy": "val_gender_acc",
}


class EpochProgressBar(keras.callbacks.Callback):
    """One progress bar step per epoch, with the latest metrics beside it."""

    def __init__(self, epochs: int, desc: str = "Training"):
        super().__init__()
        self.epochs = epochs
        self.desc = desc
        self._bar = None

    def on_train_begin(self, logs=None):
        self._bar = tqdm(total=self.epochs, desc=self.desc, unit="epoch", dynamic_ncols=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._bar.set_postfix(
            {short: f"{logs[name]:.3g}" for name, short in _SHOWN.items() if name in logs}, refresh=False
        )
        self._bar.update(1)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
