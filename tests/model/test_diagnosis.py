"""Bias and variance in the lecture's terms, and the basic recipe's next step, by hand."""

import pytest

from project.model.diagnosis import Diagnosis


@pytest.mark.parametrize("train,val,verdict,next_step", [
    (1.00, 0.99, "low bias and low variance", "nothing the recipe asks for"),
    (0.85, 0.84, "high bias (underfitting)", "reduce bias first: a bigger network"),
    (1.00, 0.90, "high variance (overfitting)", "reduce variance: more data"),
    (0.85, 0.70, "high bias and high variance", "reduce bias first"),  # the recipe fixes bias first
])
def test_verdict_and_next_step(train, val, verdict, next_step):
    d = Diagnosis(train, val, human_accuracy=1.0, tolerance=0.02)
    assert d.bias == pytest.approx(1.0 - train) and d.variance == pytest.approx(train - val)
    assert d.verdict == verdict and next_step in d.lines()[-1]


def test_human_level_moves_the_bias_not_the_variance():
    # bias is avoidable bias: against a human level of 0.9, a training accuracy of 0.9 has none
    d = Diagnosis(0.90, 0.89, human_accuracy=0.90, tolerance=0.02)
    assert d.bias == pytest.approx(0.0) and d.variance == pytest.approx(0.01) and d.verdict.startswith("low bias")
    assert d.lines()[0].startswith("bias      +0.0000   = human-level 0.9000 - clean train accuracy 0.9000")
