"""conv_output_size / same_padding: the seeds' formula ``(n + 2p - f) / s + 1`` and TF's rules."""

import itertools

import numpy as np

import pytest

import fastconv
from fastconv import conv_output_size, same_padding


def _count_windows(n, k, stride, before, after, dilation=1):
    """Count window positions by brute force: starts 0, s, 2s, ... that fit the padded input."""
    span = (k - 1) * dilation + 1
    return sum(1 for start in range(0, n + before + after, stride)
               if start + span <= n + before + after)


@pytest.mark.parametrize("n, f, s, p, expected", [
    (28, 3, 1, 0, 26), (26, 3, 1, 0, 24), (24, 3, 1, 0, 22),  # seed 001's no-pool net
    (28, 3, 1, 1, 28), (28, 5, 1, 2, 28),                     # seed 003: size kept
    (28, 3, 2, 0, 13), (13, 5, 2, 0, 5), (5, 5, 2, 0, 1),       # seeds 004 and 000
    (5, 3, 1, 1, 5), (5, 3, 1, 0, 3), (7, 3, 1, 1, 7), (7, 3, 1, 0, 5),
    (10, 2, 1, 0, 9), (5, 2, 1, 0, 4), (5, 2, 2, 0, 2), (427, 2, 2, 0, 213), (640, 2, 2, 0, 320),
])
def test_seed_formula_examples(n, f, s, p, expected):
    assert conv_output_size(n, f, s, p) == expected
    assert conv_output_size(n, f, s, (p, p)) == expected
    assert conv_output_size(n, f, s, p) == (n + 2 * p - f) // s + 1


@pytest.mark.parametrize("k, s, d", list(itertools.product((1, 2, 3, 4, 5), (1, 2, 3), (1, 2))))
def test_output_size_matches_brute_force_window_count(k, s, d):
    span = (k - 1) * d + 1
    for n in range(1, 14):
        for before, after in [(0, 0), (1, 0), (0, 2), (2, 1)]:
            if span <= n + before + after:
                assert (conv_output_size(n, k, s, (before, after), d) ==
                        _count_windows(n, k, s, before, after, d))
        if span <= n:
            assert conv_output_size(n, k, s, "VALID", d) == _count_windows(n, k, s, 0, 0, d)
            assert conv_output_size(n, k, s, "valid", d) == -(-(n - span + 1) // s)  # TF's ceil
        # SAME: ceil(n / s) outputs, and that many windows fit with same_padding's pads.
        before, after = same_padding(n, k, s, d)
        assert conv_output_size(n, k, s, "SAME", d) == -(-n // s)
        assert _count_windows(n, k, s, before, after, d) == -(-n // s)
        assert before <= after <= before + 1  # the odd cell goes after


@pytest.mark.parametrize("n, k, s, d, expected", [
    (5, 4, 1, 1, (1, 2)),   # the extra cell at the end
    (28, 3, 1, 1, (1, 1)), (28, 2, 2, 1, (0, 0)), (27, 2, 2, 1, (0, 1)), (427, 2, 2, 1, (0, 1)),
    (5, 3, 2, 1, (1, 1)), (6, 3, 2, 1, (0, 1)), (7, 4, 3, 1, (1, 2)), (8, 3, 1, 2, (2, 2)),
    (10, 1, 3, 1, (0, 0)), (4, 6, 1, 1, (2, 3)), (5, 3, 1, 3, (3, 3)), (2, 5, 3, 1, (1, 2)),
])
def test_same_padding_values(n, k, s, d, expected):
    assert same_padding(n, k, s, d) == expected
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    assert sum(same_padding(n, k, s, d)) == total


def test_helpers_are_exported_at_top_level():
    assert fastconv.conv_output_size is conv_output_size
    assert fastconv.same_padding is same_padding


@pytest.mark.parametrize("n, k, s, padding", [(1, 2, 2, "VALID"), (1, 2, 1, 0), (4, 7, 1, (1, 1)),
                                              (2, 3, 1, "valid")])
def test_window_that_does_not_fit_raises_naming_sizes(n, k, s, padding):
    with pytest.raises(ValueError, match=rf"Negative dimension size.*size {k}.*size {n}"):
        conv_output_size(n, k, s, padding)


@pytest.mark.parametrize("args, error, match", [
    ((5, 0, 1, "VALID"), ValueError, "k >= 1"),
    ((5, 3, 0, "VALID"), ValueError, "stride >= 1"),
    ((5, 3, 1, "VALID", 0), ValueError, "dilation >= 1"),
    ((-1, 3, 1, "SAME"), ValueError, "n >= 0"),
    ((5, 3, 1, "FULL"), ValueError, "padding must be 'SAME' or 'VALID'"),
    ((5, 3, 1, -1), ValueError, "non-negative"),
    ((5, 3, 1, (1, 2, 3)), ValueError, r"\(before, after\) pair"),
    ((5.0, 3, 1, "SAME"), TypeError, "n must contain integers"),
    ((5, 3, True, "SAME"), TypeError, "bool"),
])
def test_conv_output_size_rejects_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        conv_output_size(*args)


def test_window_and_padding_arguments_accept_arrays_and_tf_tensors(tf):
    x = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
    w = np.linspace(-1, 1, 3 * 3 * 3 * 4, dtype=np.float32).reshape(3, 3, 3, 4)
    expected = fastconv.conv2d(x, w, [1, 2, 2, 1], [[0, 0], [1, 1], [0, 2], [0, 0]],
                               dilations=[1, 1])
    got = fastconv.conv2d(x, w, tf.constant([1, 2, 2, 1]),
                          tf.constant([[0, 0], [1, 1], [0, 2], [0, 0]]),
                          dilations=np.array([1, 1]))
    np.testing.assert_array_equal(got, expected)
    pooled = fastconv.max_pool2d(x, tf.constant([2, 2]), np.array([2, 2]), "VALID")
    np.testing.assert_array_equal(pooled, fastconv.max_pool2d(x, 2, 2, "VALID"))
