"""``fastconv train``: the seed's CNN's gradients equal Keras', its Adam is Keras' Adam, and the
command runs and writes its figures (a small subset of the digits, one epoch)."""

import json

import numpy as np
import pytest

from fastconv import cli, train

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def data():
    return train.load_data(0)


def test_data_is_the_digits_resized_and_split_by_label(data):
    x_train, y_train, x_test, y_test = data
    assert x_train.shape == (1437, 28, 28, 1) and x_test.shape == (360, 28, 28, 1)
    assert x_train.dtype == np.float32 and 0 <= x_train.min() and x_train.max() <= 1
    counts = np.bincount(y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each digit


def test_weights_are_glorot_uniform_with_zero_biases():
    weights = train.init_weights(3)
    assert [weights[name][0].shape for name in ("conv1", "conv2", "conv3", "dense1",
                                                "dense2")] == [
        (3, 3, 1, 32), (3, 3, 32, 64), (3, 3, 64, 64), (576, 64), (64, 10)]
    kernel = weights["conv2"][0]
    assert np.abs(kernel).max() <= np.sqrt(6 / (9 * 32 + 9 * 64))
    assert not any(bias.any() for _, bias in weights.values())


def test_gradients_equal_keras_gradient_tape(data, tf):
    x_train, y_train = data[0][:32], data[1][:32]
    weights = train.init_weights(1)
    model = train.keras_model(weights)
    loss, _, grads = train.forward_backward(weights, x_train, y_train)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        keras_loss = loss_fn(y_train, model(x_train, training=True))
    expected = tape.gradient(keras_loss, model.trainable_variables)
    assert loss == pytest.approx(float(keras_loss), abs=1e-6)
    names = [name for name, kind, _ in train.LAYERS if kind != "pool"]
    for i, name in enumerate(names):
        for j in range(2):
            want = expected[2 * i + j].numpy()
            assert np.abs(grads[name][j] - want).max() <= 1e-5 * max(1, np.abs(want).max())


def test_adam_is_keras_adam(tf):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    weights = {"dense": (w.copy(), np.zeros(3, np.float32))}
    variable = tf.Variable(w)
    keras_adam = tf.keras.optimizers.Adam(1e-3, 0.9, 0.999, 1e-7)
    adam = train.Adam()
    for _ in range(3):
        g = rng.standard_normal((4, 3)).astype(np.float32)
        adam.update(weights, {"dense": (g, np.zeros(3, np.float32))})
        keras_adam.apply_gradients([(tf.constant(g), variable)])
    np.testing.assert_allclose(weights["dense"][0], variable.numpy(), rtol=0, atol=1e-6)


def test_the_command_trains_and_writes_its_figures(data, tmp_path, monkeypatch, capsys):
    subset = (data[0][:96], data[1][:96], data[2][:64], data[3][:64])
    monkeypatch.setattr(train, "load_data", lambda seed=0: subset)
    path = tmp_path / "train.json"
    assert cli.main(["train", "--epochs", "2", "--batch-size", "32", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["epochs"] == 2 and result["train_images"] == 96
    assert result["loss_per_epoch"][1] < result["loss_per_epoch"][0]
    assert 0 <= result["test_accuracy"] <= 1 and result["seconds_per_epoch"] > 0
    assert "epoch 2/2" in capsys.readouterr().out
