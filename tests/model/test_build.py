"""A network built for the data (project/model/build.py): the data's two arguments by name, lazy
layers sized, a constructor's failure one line naming the class, the settings that make it large."""

import functools

import pytest
import torch

from project.errors import SettingError
from project.model.build import build_network, callable_name, network_settings
from project.model.nn import ConvNet


class _KeywordOnly(torch.nn.Module):
    """timm-style: num_classes by keyword, no input_shape; a lazy first layer learns the width."""

    def __init__(self, num_classes: int = 3, width: int = 8):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(width), torch.nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


class _Swapped(torch.nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple, width: int = 8):
        super().__init__()
        self.shape, self.fc = tuple(input_shape), torch.nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)


class _NoData(torch.nn.Module):
    """Its own fixed head: built with neither (the dry run checks the head's width against the data)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.fc = torch.nn.Linear(64, width)


class _ByPosition(torch.nn.Module):
    def __init__(self, shape, classes):
        super().__init__()


def test_constructors_get_the_data_by_name_in_any_order_or_neither():
    keyword, _ = build_network(functools.partial(_KeywordOnly, width=5), (1, 8, 8), 10)
    assert keyword.net[1].weight.shape == (5, 64) and keyword.net[2].out_features == 10  # materialized, 10 classes
    swapped, _ = build_network(_Swapped, (1, 8, 8), 7)
    assert swapped.shape == (1, 8, 8) and swapped.fc.out_features == 7
    assert build_network(_NoData, (1, 8, 8), 10)[0].fc.out_features == 8
    # a class never gets them by position: nn.Linear(in_features, out_features) would take the shape
    with pytest.raises(SettingError, match=r"model.net=tests.model.test_build._ByPosition raised TypeError while "
                                           r"being built: .*missing 2 required positional arguments: 'shape' and "
                                           r"'classes'; allowed: a constructor that takes the data's shape and classes "
                                           r"by the names input_shape and num_classes"):
        build_network(_ByPosition, (1, 8, 8), 10)
    assert build_network(lambda shape, classes: torch.nn.Linear(shape[0], classes), (4, 1, 1), 3)[0].out_features == 3


class _LazyThatFails(torch.nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.fc = torch.nn.LazyLinear(num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)).view(3, -1)  # a batch of 2 does not split into 3


def test_lazy_layers_take_their_sizes_from_one_batch_and_a_failure_names_the_class():
    net, needs = build_network(_KeywordOnly, (1, 8, 8), 4)
    assert not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in net.parameters())
    assert net.training  # sized in eval mode, handed back in train mode
    with pytest.raises(SettingError, match=r"^model.net=tests.model.test_build._LazyThatFails raised RuntimeError: "
                                           r".*; allowed: a network whose lazy layers take a batch of shape \(2, 1, 8, 8\)"):
        build_network(_LazyThatFails, (1, 8, 8), 4)


def test_the_settings_that_make_a_network_large_and_a_callables_name():
    assert network_settings(functools.partial(ConvNet, widths=[8, 16], hidden=32, dropout=0.1)) == \
        "ConvNet(widths=[8, 16], hidden=32)"
    assert network_settings({"class_path": "project.model.nn.MLP", "init_args": {"hidden": [24], "norm": "batch"}}) == \
        "MLP(hidden=[24])"
    assert callable_name(functools.partial(_NoData, width=3)) == "_NoData" and callable_name(print) == "print"
