"""Stage 2, the model: the networks and their building blocks, the LightningModule that trains
them, the L1/L2 penalty, the learning-rate schedules and the bias/variance diagnosis.

    nn.py          norm / activation / init registries, ConvNet, MLP
    zoo.py         networks from timm and torchvision (Timm, TorchVision) with the lecture's switches
    build.py       a network built for the data: its two arguments by name, memory measured first
    classifier.py  ImageClassifier: loss, metrics, optimizer; owns every metric name
    schedules.py   everything a schedule needs: run length, per-step or per-epoch, warm-up, rules
    callbacks.py   WeightPenalty (L2, proximal or subgradient L1), NonFiniteLossGuard
    diagnosis.py   bias and variance in the lecture's terms, the basic recipe's next step

May import: the base modules (``project.errors``, ``devices``, ``memory``), ``project.data`` and
this package.
"""

from project.model.classifier import ImageClassifier  # the public class path: project.model.ImageClassifier

__all__ = ["ImageClassifier"]
