"""Small ports of reference code, shared by tests that pin raekit to it (written from the
references, independent of raekit)."""

import numpy as np


def keras_plateau(losses, lr, factor, patience, min_delta, min_lr=0.0):
    """keras.callbacks.ReduceLROnPlateau (Keras 2.2, mode "min", cooldown 0): the learning rate
    in force after each epoch's end."""
    best, wait, out = np.inf, 0, []
    for loss in losses:
        if loss < best - min_delta:
            best, wait = loss, 0
        else:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr, wait = max(lr * factor, min_lr), 0
        out.append(lr)
    return out
