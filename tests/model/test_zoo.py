"""Networks from timm and torchvision as model.net (project/model/zoo.py): each trains through a
real Trainer on the digits, takes the data's classes and channels under the library's own names,
gets the lecture's switches, never touches the network, and says what is wrong in one line."""

import functools
import socket
import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from torch import nn

from project.errors import SettingError
from project.model.build import build_network
from project.model.classifier import ImageClassifier
from project.model.nn import WEIGHT_LAYERS
from project.model.zoo import Timm, TorchVision


@pytest.fixture
def no_network(monkeypatch):
    """Every socket refuses to connect: a constructor that tried the network would fail."""
    def refuse(self, *args, **kwargs):
        raise OSError("the test refuses network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.parametrize("net", [
    functools.partial(Timm, name="resnet18"),
    functools.partial(Timm, name="mobilenetv3_small_050"),
    functools.partial(Timm, name="convnext_atto"),          # cannot take 8x8: resized inside to its smallest size
    functools.partial(Timm, name="vit_tiny_patch16_224"),   # img_size given: one 16x16 patch
    functools.partial(TorchVision, name="resnet18"),
    functools.partial(TorchVision, name="mobilenet_v3_small"),
], ids=lambda p: f"{p.func.__name__}-{p.keywords['name']}")
def test_a_library_network_trains_one_epoch_on_the_digits(net, digits, make_trainer, no_network):
    torch.manual_seed(0)
    model = ImageClassifier(net=net, optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    trainer = make_trainer(max_epochs=1, limit_train_batches=6, limit_val_batches=2)
    trainer.fit(model, digits)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_classes_and_channels_go_in_under_the_librarys_names(no_network):
    timm_net = Timm((1, 8, 8), 7, name="resnet18")
    assert timm_net.net.conv1.in_channels == 1 and timm_net.net.num_classes == 7  # in_chans, num_classes
    rgb = TorchVision((3, 8, 8), 7, name="resnet18")
    assert rgb.net.conv1.in_channels == 3 and rgb.net.fc.out_features == 7
    gray = TorchVision((1, 8, 8), 7, name="resnet18")  # a gray image as three equal channels
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(gray.adapt(x), x.expand(-1, 3, -1, -1))
    four = TorchVision((4, 8, 8), 7, name="resnet18")  # a learned 1x1 conv into the stem's 3 channels
    assert four.stem.in_channels == 4 and four(torch.rand(2, 4, 8, 8)).shape == (2, 7)


def test_the_librarys_own_functions_are_the_wrappers():
    net, _ = build_network(timm.models.resnet18, (1, 8, 8), 10)
    assert isinstance(net, Timm) and type(net.net).__name__ == "ResNet"
    net, _ = build_network(torchvision.models.mobilenet_v3_small, (1, 8, 8), 10)
    assert isinstance(net, TorchVision) and type(net.net).__name__ == "MobileNetV3"


def test_norm_replaces_every_normalization_where_the_constructor_takes_one():
    net = Timm((1, 8, 8), 10, name="resnet18", norm="group", norm_groups=4)
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert norms and all(isinstance(m, nn.GroupNorm) and m.num_groups == 4 for m in norms)
    tv = TorchVision((1, 8, 8), 10, name="resnet18", norm="none")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in tv.modules())


def test_init_reinitializes_every_conv_and_linear_weight_and_says_how_many():
    net = Timm((1, 8, 8), 10, name="resnet18", init="zeros")
    weights = [m.weight for m in net.modules() if isinstance(m, WEIGHT_LAYERS)]
    assert len(weights) == 21 and all(torch.count_nonzero(w) == 0 for w in weights)  # 20 convs + the classifier
    assert net.notes == ["note: model.net: init=zeros re-initialized 21 conv and linear weight tensors of timm resnet18"]


def test_a_librarys_notes_wait_for_every_check(tmp_path, capsys):
    """A note of a library network is said after the checks: a bad setting's line stays the only one."""
    from project.run.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["fit", "--model.net=Timm", "--model.net.name=convnext_atto", "--trainer.val_check_interval=100000",
              f"--trainer.logger.init_args.save_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("error: trainer.val_check_interval=100000")


def test_dropout_is_the_librarys():
    assert Timm((1, 8, 8), 10, name="resnet18", drop_rate=0.3).net.drop_rate == 0.3
    dropouts = [m.p for m in TorchVision((1, 8, 8), 10, name="mobilenet_v3_small", dropout=0.4).modules()
                if isinstance(m, nn.Dropout)]
    assert dropouts == [0.4]


@pytest.mark.parametrize("make, message", [
    (lambda: Timm((1, 8, 8), 10, name="resnt18"), "name=resnt18 is not known (did you mean resnet18"),
    (lambda: Timm((1, 8, 8), 10, pretrained=True),
     "pretrained=True would download timm resnet18's weights (timm/resnet18.a1_in1k) and this project never downloads"),
    (lambda: TorchVision((1, 8, 8), 10, weights="DEFAULT"),
     "weights=DEFAULT would download https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    (lambda: TorchVision((1, 8, 8), 10, weights="IMAGENET9"), "weights=IMAGENET9; allowed: DEFAULT, IMAGENET1K_V1 or null"),
    (lambda: TorchVision((1, 8, 8), 10, dropout=0.2),
     "dropout=0.2 cannot be set on torchvision resnet18: its constructor takes no dropout"),
    (lambda: Timm((1, 8, 8), 10, drop_rate=1.0), "drop_rate=1.0; allowed: a number in [0, 1)"),
    (lambda: Timm((1, 8, 8), 10, name="convnext_atto", input_size=(8, 8)), "input_size=[8, 8] is too small for timm convnext_atto"),
    (lambda: build_network(torchvision.models.ResNet, (1, 8, 8), 10),
     "model.net=torchvision.models.resnet.ResNet is a class whose constructor needs its blocks spelled out"),
])
def test_what_cannot_be_done_is_one_line_without_the_network(make, message, no_network):
    with pytest.raises(SettingError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_through_the_command_line_with_sockets_refused(tmp_path):
    """`project fit --model.net=timm.models.resnet18` as a user types it, in a process whose sockets
    refuse to connect (sitecustomize): it trains, and `--model.net.help` lists timm's settings."""
    (tmp_path / "sitecustomize.py").write_text(
        "import socket\n"
        "def refuse(*a, **k):\n    raise OSError('no network in this test')\n"
        "socket.socket.connect = refuse\nsocket.socket.connect_ex = refuse\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "project", "fit", "--model.net=timm.models.resnet18",
                          "--trainer.max_epochs=1", "--data.train_size=64", "--trainer.logger=false",
                          "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=1",
                          "--trainer.limit_test_batches=1"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "test accuracy" in run.stdout
    help_text = subprocess.run([sys.executable, "-m", "project", "fit", "--model.net.help", "Timm"],
                               capture_output=True, text=True, env=env, timeout=120).stdout
    assert "--model.net.drop_rate" in help_text and "--model.net.pretrained" in help_text
