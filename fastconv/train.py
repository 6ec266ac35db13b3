"""``fastconv train``: seed 001's MNIST CNN trained on fastconv's kernels.

The model (``../shared/seeds`` 001, Keras)::

    Conv2D(32, 3, relu) -> MaxPool(2) -> Conv2D(64, 3, relu) -> MaxPool(2) -> Conv2D(64, 3, relu)
    -> Flatten -> Dense(64, relu) -> Dense(10)

on scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: 1,797 8x8
images, no download) resized to 28x28 (bilinear, half-pixel centres, scaled to [0, 1]), with a
fixed stratified 80/20 train/test split. Every conv and pool runs forward and backward on
fastconv (:func:`fastconv.vjp`); the dense layers, softmax cross-entropy and Adam (Keras'
defaults: learning rate 1e-3, betas 0.9/0.999, epsilon 1e-7, Keras' update order) are NumPy.
Weights start as Keras' would (Glorot uniform kernels, zero biases) from ``--seed``.

``check_keras`` builds the same model in Keras with the same initial weights, batches and
optimizer, and compares the loss of every step of the first epoch.

Examples
--------
    fastconv train                                 # 5 epochs, batch 32
    fastconv train --epochs 5 --check-keras --json train.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np

#: (name, kind, filters/units): the seed's layers.
LAYERS = (("conv1", "conv", 32), ("pool1", "pool", 2), ("conv2", "conv", 64),
          ("pool2", "pool", 2), ("conv3", "conv", 64), ("dense1", "dense", 64),
          ("dense2", "dense", 10))
IMAGE = 28


def _resize_matrix(source, target):
    """(target, source) bilinear interpolation matrix with half-pixel centres."""
    matrix = np.zeros((target, source))
    for i in range(target):
        position = min(max((i + 0.5) * source / target - 0.5, 0), source - 1)
        low = int(np.floor(position))
        high = min(low + 1, source - 1)
        matrix[i, low] += 1 - (position - low)
        matrix[i, high] += position - low
    return matrix


def load_data(seed=0):
    """``(x_train, y_train, x_test, y_test)``: the digits as (N, 28, 28, 1) float32 in [0, 1],
    labels int64, split 80/20 stratified by label (scikit-learn, ``random_state=seed``)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError("fastconv train needs scikit-learn (its bundled digits): "
                          "pip install 'fastconv[train]'") from None
    digits = load_digits()
    resize = _resize_matrix(8, IMAGE)
    images = np.einsum("ij,njk,lk->nil", resize, digits.images / 16.0, resize)
    x = images[..., None].astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target.astype(np.int64), test_size=0.2, stratify=digits.target,
        random_state=seed)
    return x_train, y_train, x_test, y_test


def init_weights(seed=0):
    """Glorot-uniform kernels and zero biases, as Keras initialises the seed's model:
    ``{name: (kernel, bias)}`` (conv kernels in TF's (H, W, in, out) layout)."""
    rng = np.random.default_rng(seed)
    weights, channels, size = {}, 1, IMAGE
    for name, kind, units in LAYERS:
        if kind == "pool":
            size //= 2
            continue
        if kind == "conv":
            shape, fan_in, fan_out = (3, 3, channels, units), 9 * channels, 9 * units
            channels, size = units, size - 2
        else:
            inputs = size * size * channels if name == "dense1" else channels
            shape, fan_in, fan_out = (inputs, units), inputs, units
            channels = units
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights[name] = (rng.uniform(-limit, limit, shape).astype(np.float32),
                         np.zeros(units, np.float32))
    return weights


def forward_backward(weights, x, labels):
    """The mean softmax cross-entropy of a batch and its gradient for every weight:
    ``(loss, logits, {name: (d_kernel, d_bias)})``."""
    import fastconv

    backwards, h = [], x
    for name, kind, units in LAYERS:
        if kind == "conv":
            kernel, bias = weights[name]
            h, back = fastconv.vjp(fastconv.conv2d, h, kernel, 1, "VALID", bias=bias,
                                   activation="relu")
        elif kind == "pool":
            h, back = fastconv.vjp(fastconv.max_pool2d, h, units, units, "VALID")
        else:
            if name == "dense1":
                shape = h.shape
                h = h.reshape(len(h), -1)
                backwards.append(("flatten", shape))
            kernel, bias = weights[name]
            inputs = h
            h = inputs @ kernel + bias
            if name != LAYERS[-1][0]:
                h = np.maximum(h, 0)
            back = (inputs, h)
        backwards.append((name, back))
    logits = h.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    grad = np.exp(log_probs)
    grad[np.arange(len(labels)), labels] -= 1
    grad = (grad / len(labels)).astype(np.float32)
    grads = {}
    for name, back in reversed(backwards):
        if name == "flatten":
            grad = grad.reshape(back)
            continue
        kind = dict((n, k) for n, k, _ in LAYERS)[name]
        if kind == "dense":
            inputs, output = back
            if name != LAYERS[-1][0]:
                grad = np.where(output > 0, grad, 0).astype(np.float32)
            grads[name] = (inputs.T @ grad, grad.sum(axis=0))
            grad = grad @ weights[name][0].T
        elif kind == "conv":  # the first layer's input gradient is never read
            grad, d_kernel, d_bias = back(grad, needs=(name != LAYERS[0][0], True, True))
            grads[name] = (d_kernel, d_bias)
        else:
            (grad,) = back(grad)
    return float(loss), logits, grads


@dataclass
class Adam:
    """Keras' Adam: ``m += (g - m)(1 - b1)``, ``v += (g^2 - v)(1 - b2)``, ``w -= m * lr *
    sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps)``."""

    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    step: int = 0
    moments: dict = field(default_factory=dict)

    def update(self, weights, grads):
        self.step += 1
        alpha = (self.learning_rate * np.sqrt(1 - self.beta_2 ** self.step)
                 / (1 - self.beta_1 ** self.step))
        for name, pair in grads.items():
            updated = []
            for index, (w, g) in enumerate(zip(weights[name], pair)):
                m, v = self.moments.setdefault((name, index), (np.zeros_like(w),
                                                               np.zeros_like(w)))
                m += (g - m) * (1 - self.beta_1)
                v += (np.square(g) - v) * (1 - self.beta_2)
                updated.append((w - (m * alpha) / (np.sqrt(v) + self.epsilon))
                               .astype(np.float32))
            weights[name] = tuple(updated)


def batches(n, batch_size, epoch, seed):
    """The shuffled batch indices of one epoch (the same for fastconv and Keras)."""
    order = np.random.default_rng((seed, epoch)).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def accuracy(weights, x, y, batch_size=256):
    """Test accuracy of ``weights`` (forward only)."""
    import fastconv

    correct = 0
    for start in range(0, len(x), batch_size):
        h = x[start:start + batch_size]
        for name, kind, units in LAYERS:
            if kind == "conv":
                kernel, bias = weights[name]
                h = fastconv.conv2d(h, kernel, 1, "VALID", bias=bias, activation="relu")
            elif kind == "pool":
                h = fastconv.max_pool2d(h, units, units, "VALID")
            else:
                h = h.reshape(len(h), -1) @ weights[name][0] + weights[name][1]
                if name != LAYERS[-1][0]:
                    h = np.maximum(h, 0)
        correct += int((h.argmax(axis=1) == y[start:start + batch_size]).sum())
    return correct / len(x)


def _progress(done, total, loss, started, stream):
    width = 30
    filled = int(width * done / total)
    stream.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                 f"loss {loss:.4f} {time.perf_counter() - started:5.1f} s")
    stream.flush()


def keras_model(weights):
    """The seed's model in Keras, holding ``weights``."""
    from .tf_reference import import_tensorflow

    tf = import_tensorflow()
    keras = tf.keras
    model = keras.Sequential([
        keras.Input((IMAGE, IMAGE, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    trainable = [layer for layer in model.layers if layer.weights]
    for layer, (name, kind, _) in zip(trainable, [l for l in LAYERS if l[1] != "pool"]):
        layer.set_weights([np.array(w) for w in weights[name]])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, 0.9, 0.999, 1e-7),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def train(epochs=5, batch_size=32, seed=0, check_keras=False, stream=None, data=None):
    """Train the seed's CNN; returns the figures ``fastconv train --json`` writes.

    ``data`` (optional) replaces :func:`load_data`'s ``(x_train, y_train, x_test, y_test)``.
    """
    stream = sys.stdout if stream is None else stream
    x_train, y_train, x_test, y_test = load_data(seed) if data is None else data
    initial = init_weights(seed)
    weights = dict(initial)
    optimizer = Adam()
    losses, seconds, accuracies = [], [], []
    for epoch in range(epochs):
        started = time.perf_counter()
        steps = batches(len(x_train), batch_size, epoch, seed)
        epoch_losses = []
        for step, index in enumerate(steps, 1):
            loss, _, grads = forward_backward(weights, x_train[index], y_train[index])
            optimizer.update(weights, grads)
            epoch_losses.append(loss)
            _progress(step, len(steps), float(np.mean(epoch_losses)), started, stream)
        seconds.append(time.perf_counter() - started)
        accuracies.append(accuracy(weights, x_test, y_test))
        losses.append(epoch_losses)
        stream.write(f"\n  epoch {epoch + 1}/{epochs}: loss {np.mean(epoch_losses):.4f}, "
                     f"test accuracy {accuracies[-1]:.2%}, {seconds[-1]:.1f} s\n")
    result = {
        "epochs": epochs, "batch_size": batch_size, "seed": seed,
        "train_images": len(x_train), "test_images": len(x_test),
        "test_accuracy": accuracies[-1] if accuracies else None,
        "test_accuracy_per_epoch": accuracies,
        "loss_per_epoch": [float(np.mean(e)) for e in losses],
        "seconds_per_epoch": float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
        if seconds else None,
        "first_epoch_seconds": seconds[0] if seconds else None,
    }
    if check_keras:
        result.update(_check_keras(initial, x_train, y_train, x_test, y_test, epochs,
                                   batch_size, seed, losses[0], stream))
    return result


def _check_keras(initial, x_train, y_train, x_test, y_test, epochs, batch_size, seed,
                 fastconv_losses, stream):
    """The same training in Keras from the same weights and batches: the first epoch step by
    step (``train_on_batch``; the largest per-step loss difference, and fastconv's loss at
    Keras' own weights), the others with ``model.fit`` (Keras' time per epoch, the median),
    then Keras' test accuracy."""
    model = keras_model(initial)
    keras_losses, same_weights = [], []
    steps = batches(len(x_train), batch_size, 0, seed)
    first = 0.0
    for index in steps:
        # fastconv's loss at Keras' current weights (the same point, however far the two
        # trajectories have drifted apart)
        current = _weights_of(model)
        same_weights.append(forward_backward(current, x_train[index], y_train[index])[0])
        started = time.perf_counter()
        keras_losses.append(float(model.train_on_batch(x_train[index], y_train[index])))
        first += time.perf_counter() - started
    fit_seconds = []
    for epoch in range(1, max(epochs, 2)):  # the same batches, epoch by epoch
        order = np.concatenate(batches(len(x_train), batch_size, epoch, seed))
        started = time.perf_counter()
        model.fit(x_train[order], y_train[order], batch_size=batch_size, epochs=1,
                  shuffle=False, verbose=0)
        fit_seconds.append(time.perf_counter() - started)
    keras_accuracy = float((model.predict(x_test, verbose=0).argmax(axis=1) == y_test).mean())
    fit_seconds = float(np.median(fit_seconds))
    differences = [abs(a - b) for a, b in zip(keras_losses, fastconv_losses)]
    difference = max(differences)
    same_point = max(abs(a - b) for a, b in zip(keras_losses, same_weights))
    within = next((i for i, d in enumerate(differences) if d > 1e-3), len(differences))
    stream.write(f"  keras: first epoch {first:.1f} s (train_on_batch), later epochs "
                 f"{fit_seconds:.1f} s (fit, median), test accuracy after {max(epochs, 2)} "
                 f"epochs {keras_accuracy:.2%}\n  loss difference over the first epoch's "
                 f"{len(steps)} steps: largest {difference:.2e} (within 1e-3 for the first "
                 f"{within}); at Keras' own weights, largest {same_point:.2e}\n")
    return {"keras_max_loss_difference": difference,
            "keras_steps_within_1e-3": within,
            "keras_max_loss_difference_same_weights": same_point,
            "keras_seconds_per_epoch": fit_seconds, "keras_test_accuracy": keras_accuracy,
            "keras_first_epoch_seconds": first, "keras_first_epoch_losses": keras_losses,
            "fastconv_first_epoch_losses": list(fastconv_losses)}


def _weights_of(model):
    """A Keras model's weights as ``{name: (kernel, bias)}``."""
    trainable = [layer for layer in model.layers if layer.weights]
    names = [name for name, kind, _ in LAYERS if kind != "pool"]
    return {name: tuple(np.array(w) for w in layer.get_weights())
            for name, layer in zip(names, trainable)}


def main(args):
    """``fastconv train``'s body (``args`` from the CLI parser); returns the exit status."""
    result = train(args.epochs, args.batch_size, args.seed, args.check_keras)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0
