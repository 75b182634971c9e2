"""Memory needs measured on the meta device, against a hand count."""

import pytest
import torch
from torch import nn

from project.errors import SettingError
from project.memory import NetworkMemory, check_batches, check_weights, measure


def test_a_linear_networks_needs_by_hand():
    memory = measure(lambda: nn.Sequential(nn.Flatten(), nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5)), (1, 2, 5))
    # parameters: (10*20 + 20) + (20*5 + 5) = 325 floats; outputs per sample: 10, 20, 20 and 5 floats
    assert memory.parameters == 325 * 4
    assert memory.train_per_sample == (10 + 20 + 20 + 5) * 4
    assert memory.eval_per_sample == (20 + 20) * 4  # the largest pair of consecutive outputs
    assert memory.training(8) == 4 * 325 * 4 + 8 * 55 * 4


def test_weights_or_batches_that_cannot_fit_are_named():
    huge = NetworkMemory(parameters=10 ** 15, train_per_sample=1, eval_per_sample=1)
    with pytest.raises(SettingError, match=r"^model.net=Big\(\) has .* of weights alone; allowed: a network whose"):
        check_weights(huge, "Big()")
    wide = NetworkMemory(parameters=1, train_per_sample=10 ** 13, eval_per_sample=1)
    with pytest.raises(SettingError, match=r"^data.batch_size=64 with model.net=Wide\(\) needs about"):
        check_batches(wide, "Wide()", torch.device("cpu"), 64, 512)
    check_batches(None, "unmeasured", torch.device("cpu"), 64, 512)  # a network the meta device cannot run
