"""Networks of a user's own, each with one mistake (and a few that must train): the rows of
tests/own/test_mistakes.py name them by class path."""

import torch
from torch import nn


class Good(nn.Module):
    def __init__(self, input_shape, num_classes, width: int = 16):
        super().__init__()
        c, h, w = input_shape
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.fc(x)


class TimmStyle(nn.Module):
    def __init__(self, num_classes=10, width=8, in_chans=1):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


class Dict(Good):
    def forward(self, x):
        return {"logits": super().forward(x)}


class ReturnsNone(Good):
    def forward(self, x):
        super().forward(x)


class OneD(Good):
    def forward(self, x):
        return super().forward(x)[:, 0]


class ThreeD(Good):
    def forward(self, x):
        return super().forward(x)[..., None]


class IntOut(Good):
    def forward(self, x):
        return super().forward(x).argmax(1, keepdim=True).repeat(1, 10)


class BatchMean(Good):
    def forward(self, x):
        return super().forward(x).mean(0, keepdim=True)


class NeedsDepth(Good):
    def __init__(self, input_shape, num_classes, depth: int):
        super().__init__(input_shape, num_classes)


class InitRaises(nn.Module):
    def __init__(self, input_shape, num_classes, width: int = 4):
        super().__init__()
        raise ValueError("width must be even")


class NoParams(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.k = num_classes

    def forward(self, x):
        return x.flatten(1)[:, :self.k]


class Frozen(Good):
    def __init__(self, input_shape, num_classes):
        super().__init__(input_shape, num_classes)
        for p in self.parameters():
            p.requires_grad_(False)


class Detached(Good):
    def forward(self, x):
        return super().forward(x).detach()


class NanInit(Good):
    def __init__(self, input_shape, num_classes):
        super().__init__(input_shape, num_classes)
        with torch.no_grad():
            self.fc[1].weight.fill_(float("nan"))


class TwoArgs(Good):
    def forward(self, x, y):
        return super().forward(x)


class RGBOnly(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


class TrainOnlyFails(Good):
    def forward(self, x):
        if self.training:
            raise RuntimeError("only in training")
        return super().forward(x)


class Softmaxed(Good):
    def forward(self, x):
        return super().forward(x).softmax(1)


def make_net(input_shape, num_classes):
    return Good(input_shape, num_classes)


NOT_A_CLASS = 5


class NotAModule:
    def __init__(self, input_shape, num_classes):
        pass


class Float64(Good):
    def __init__(self, input_shape, num_classes):
        super().__init__(input_shape, num_classes)
        self.double()

    def forward(self, x):
        return super().forward(x.double())


class HalfPrec(Good):
    def forward(self, x):
        return super().forward(x).half()


class KwargsOnly(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.fc = nn.Linear(64, kwargs["num_classes"])

    def forward(self, x):
        return self.fc(x.flatten(1))


class StringTyped(Good):
    def __init__(self, input_shape, num_classes, act: str = "relu"):
        super().__init__(input_shape, num_classes)


def make_typed(input_shape, num_classes, width: int = 16) -> nn.Module:
    return Good(input_shape, num_classes, width)


class Flat13(Good):
    """Three outputs too many: cross entropy would accept it and train silently."""

    def __init__(self, input_shape, num_classes):
        super().__init__(input_shape, num_classes + 3)


class OwnDropout(nn.Module):
    """A parameter named as one of ConvNet's, with a default of its own that must stay."""

    def __init__(self, input_shape, num_classes, dropout: float = 0.5, width: int = 8):
        super().__init__()
        self.dropout, self.width = dropout, width
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))

    def forward(self, x):
        return self.fc(x)


class LazyHead(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(num_classes))

    def forward(self, x):
        return self.net(x)
