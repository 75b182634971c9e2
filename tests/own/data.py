"""Data modules of a user's own, each with one mistake: the rows of tests/own/test_mistakes.py
name them by class path."""

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset


class Good(LightningDataModule):
    def __init__(self, size: int = 256, batch_size: int = 32):
        super().__init__()
        self.size, self.batch_size = size, batch_size
        self.num_classes, self.input_shape = 2, (1, 8, 8)

    def tensors(self):
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(self.size) % 2
        images = torch.rand(self.size, 1, 8, 8, generator=g) * 0.5
        images[labels == 0, :, ::2, :] += 1
        images[labels == 1, :, :, ::2] += 1
        return images, labels

    def setup(self, stage=None):
        images, labels = self.tensors()
        n = self.size // 4
        self.sets = {"train": TensorDataset(images[2 * n:], labels[2 * n:]),
                     "val": TensorDataset(images[:n], labels[:n]), "test": TensorDataset(images[n:2 * n], labels[n:2 * n])}

    def train_dataloader(self):
        return DataLoader(self.sets["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.sets["val"], batch_size=64)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], batch_size=64)


class NoClasses(Good):
    def __init__(self):
        super().__init__()
        del self.num_classes


class NoShape(Good):
    def __init__(self):
        super().__init__()
        del self.input_shape


class StrClasses(Good):
    def __init__(self):
        super().__init__()
        self.num_classes = "2"


class OneClass(Good):
    def __init__(self):
        super().__init__()
        self.num_classes = 1


class TwoDShape(Good):
    def __init__(self):
        super().__init__()
        self.input_shape = (8, 8)


class WrongShape(Good):
    def __init__(self):
        super().__init__()
        self.input_shape = (1, 28, 28)


class NoTrainLoader(Good):
    train_dataloader = LightningDataModule.train_dataloader


class NoneLoader(Good):
    def train_dataloader(self):
        return None


class NoVal(Good):
    val_dataloader = LightningDataModule.val_dataloader


class NoTest(Good):
    test_dataloader = LightningDataModule.test_dataloader


class Dicts(Good):
    def train_dataloader(self):
        images, labels = self.tensors()
        return DataLoader([{"x": i, "y": l} for i, l in zip(images, labels)], batch_size=32)


class ImagesOnly(Good):
    def train_dataloader(self):
        images, _ = self.tensors()
        return DataLoader(images, batch_size=32)


class LabelOutOfRange(Good):
    def tensors(self):
        images, labels = super().tensors()
        return images, labels + 5


class NegativeLabel(Good):
    def tensors(self):
        images, labels = super().tensors()
        return images, labels - 1


class FloatLabels(Good):
    def tensors(self):
        images, labels = super().tensors()
        return images, labels.float()


class Uint8Images(Good):
    def tensors(self):
        images, labels = super().tensors()
        return (images * 100).to(torch.uint8), labels


class EmptyTrain(Good):
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), batch_size=32)


class SetupRaises(Good):
    def setup(self, stage=None):
        raise FileNotFoundError("/data/my_images not found")


class InitRaises(Good):
    def __init__(self, size: int = 256):
        raise ValueError("size must be a power of 2")


class NoBatching(Good):
    def train_dataloader(self):
        return DataLoader(self.sets["train"], batch_size=None)


class NanImages(Good):
    def tensors(self):
        images, labels = super().tensors()
        images[0, 0, 0, 0] = float("nan")
        return images, labels


class LabelsInBatch2D(Good):
    def tensors(self):
        images, labels = super().tensors()
        return images, labels[:, None]


class NotADataModule(torch.utils.data.Dataset):
    pass


class ThreeClassesDeclared(Good):
    """says 3 classes, labels hold 2: fine"""
    def __init__(self):
        super().__init__()
        self.num_classes = 3


class NoPredict(Good):
    """predict needs predict_dataloader()."""


class TwoValLoaders(Good):
    """Two validation loaders, as Lightning allows: must train."""

    def val_dataloader(self):
        return [DataLoader(self.sets["val"], batch_size=64), DataLoader(self.sets["test"], batch_size=64)]
