"""One batch through the network before any work (project/run/dry_run.py): a network of one's own
that cannot train on this data stops with one line naming it, exit code 2, and no log folder;
lazy layers take their sizes from the data."""

import textwrap

import pytest
import torch

from project.errors import SettingError
from project.model.classifier import ImageClassifier
from project.run.cli import main
from project.run.dry_run import dry_run

NETS = textwrap.dedent('''
    import torch
    from torch import nn

    class Flat(nn.Module):
        def __init__(self, input_shape, num_classes, extra: int = 0):
            super().__init__()
            self.fc = nn.Linear(int(torch.tensor(input_shape).prod()), num_classes + extra)

        def forward(self, x):
            return self.fc(x.flatten(1))

    class Raises(nn.Module):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.fc = nn.Linear(10, num_classes)

        def forward(self, x):
            return self.fc(x.flatten(1))

    class Infinite(Flat):
        def forward(self, x):
            return super().forward(x) * float("inf")

    class Pair(Flat):
        def forward(self, x):
            return super().forward(x), x

    class Lazy(nn.Module):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(num_classes))

        def forward(self, x):
            return self.net(x)
''')


@pytest.fixture
def own_package(tmp_path):
    (tmp_path / "my_nets.py").write_text(NETS)
    return tmp_path


@pytest.mark.parametrize("net, line", [
    (["--model.net=my_nets.Flat", "--model.net.extra=3"],
     "error: model.net=my_nets.Flat returned (2, 13) for a batch of 2; allowed: an output of shape [batch, num_classes] "
     "= [2, 10] (one logit per class of the data)"),
    (["--model.net=my_nets.Raises"],
     "error: model.net=my_nets.Raises raised RuntimeError on one: mat1 and mat2 shapes cannot be multiplied (2x64 and "
     "10x10); allowed: a network whose forward takes a batch of shape (2, 1, 8, 8) ([batch, 1, 8, 8])"),
    (["--model.net=my_nets.Infinite"],
     "error: model.net=my_nets.Infinite gives a loss of nan on its first batch (an output of inf at most); allowed: a "
     "network whose untrained output gives a finite loss"),
    (["--model.net=my_nets.Pair"],
     "error: model.net=my_nets.Pair returned tuple for a batch of 2; allowed: an output of shape [batch, num_classes] "
     "= [2, 10] (one logit per class of the data)"),
])
def test_a_network_that_cannot_train_here_is_one_line_before_any_folder(own_package, monkeypatch, capsys, net, line):
    monkeypatch.syspath_prepend(str(own_package))
    monkeypatch.chdir(own_package)
    with pytest.raises(SystemExit) as stop:
        main(["fit", *net])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]
    assert not (own_package / "logs").exists()


def test_lazy_layers_take_their_sizes_from_the_data(own_package, monkeypatch):
    monkeypatch.syspath_prepend(str(own_package))
    from my_nets import Lazy

    model = ImageClassifier(net=Lazy, input_shape=(1, 8, 8))
    assert model.net.net[1].weight.shape == (16, 64) and model.net.net[3].weight.shape == (10, 16)


def test_an_input_shape_the_images_do_not_have_is_named():
    model = ImageClassifier(input_shape=(1, 8, 8))
    with pytest.raises(SettingError) as err:
        dry_run(model, torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))
    assert str(err.value) == ("data.input_shape=[1, 8, 8] differs from its images; allowed: the shape of the images "
                              "the data module gives, (3, 8, 8)")


def test_a_good_network_passes_and_keeps_its_mode():
    model = ImageClassifier(input_shape=(1, 8, 8))
    model.net.train()
    dry_run(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    assert model.net.training
