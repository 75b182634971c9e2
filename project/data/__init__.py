"""Stage 1, the data: data sets and their file checks, the train/val/test split, input
normalization, batched augmentation and streaming, gathered in ``ImageDataModule``.

    datasets.py    the registry of data sets: loaders, file checks, shape and classes
    folders.py     the user's image folder: listed, every file decoded and checked, bad files named or skipped
    splits.py      the stratified split and the normalization statistics, summed a chunk at a time
    augment.py     batched augmentation with a random draw per sample
    stream.py      data.stream: LitData chunks (project prepare), the cache, resumable loaders
    resume.py      what a data module keeps in a checkpoint: augmentation streams, a cut epoch, a stream's position
    datamodule.py  ImageDataModule: the splits, loaders (sharded under DDP), augmentation, data.test_unused

May import: ``project.errors``, ``project.devices``, ``project.memory`` and this package.
"""

from project.data.datamodule import ImageDataModule  # the public class path: project.data.ImageDataModule

__all__ = ["ImageDataModule"]
