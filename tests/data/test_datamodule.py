import pytest
import torch
from lightning.pytorch import LightningModule

from project.data.datamodule import ImageDataModule
from project.data.splits import normalization_stats
from project.errors import SettingError


def test_datamodule_digits_split():
    dm = ImageDataModule(train_size=500)
    dm.setup("fit")
    assert len(dm.train_set) == 500 and len(dm.val_set) == 180 and len(dm.test_set) == 360
    assert dm.train_set.images.dtype == torch.uint8 and dm.input_shape == (1, 8, 8)


def test_normalization_statistics_come_from_training_split_only():
    dm = ImageDataModule(dataset="fake", fake_size=200, fake_shape=(3, 4, 4))
    dm.setup("fit")
    train = dm.train_set.images.float() / 255
    assert torch.allclose(dm.mean.flatten(), train.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(dm.std.flatten(), train.transpose(0, 1).reshape(3, -1).std(dim=1), atol=1e-6)
    before = dm.mean.clone(), dm.std.clone()
    dm.val_set.images.zero_()
    dm.test_set.images.fill_(255)
    assert all(torch.equal(a, b) for a, b in zip(before, normalization_stats(dm.train_set.images, "standardize")))
    shift, scale = normalization_stats(dm.train_set.images, "minmax")
    out = (train - shift) / scale
    assert out.amin().item() == pytest.approx(0) and out.amax().item() == pytest.approx(1)


def test_batches_are_one_indexing_operation():
    dm = ImageDataModule(batch_size=16)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 8, 8) and images.dtype == torch.uint8 and labels.shape == (16,)


class _Recorder(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen = {"train": [], "val": [], "train_clean": []}

    def training_step(self, batch, i):
        self.seen["train"].append(batch[0].clone())
        return self.layer(batch[0].mean().view(1, 1)).sum()

    def validation_step(self, batch, i, dataloader_idx=0):
        self.seen["val" if dataloader_idx == 0 else "train_clean"].append(batch[0].clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_augmentation_applies_in_training_only(make_trainer):
    dm = ImageDataModule(batch_size=8, augment=[{"name": "rotation", "degrees": 30}], eval_batch_size=8)
    model = _Recorder()
    make_trainer(limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0).fit(model, dm)
    plain_val = dm.prepare(dm.val_set.images[:8])
    assert torch.allclose(model.seen["val"][0], plain_val)
    # the clean training subset is evaluated without augmentation too
    assert torch.allclose(model.seen["train_clean"][0], dm.prepare(dm.train_clean_set.images[:8]))
    train_batch = model.seen["train"][0]
    assert train_batch.shape == (8, 1, 8, 8) and train_batch.dtype == torch.float32
    # normalized augmented data is not any plain training batch
    plain = dm.prepare(dm.train_set.images)
    assert not any(torch.allclose(train_batch[0], p) for p in plain)


@pytest.mark.parametrize("kwargs,message", [
    (dict(val_fraction=0.0), r"data.val_fraction=0.0; allowed: a number in \(0, 1\)"),
    (dict(val_fraction=0.5, test_fraction=0.5), "data.test_fraction=0.5 with data.val_fraction=0.5 leaves no training split"),
    (dict(dataset="imagenet"), r"data.dataset=imagenet is not known \(did you mean image_folder\?\); allowed: cifar10, "
                                "digits, fake, fashion_mnist, image_folder, mnist, mnist5k$"),
    (dict(augment=["mixup"]), "data.augment.name=mixup is not known; allowed: affine, erasing, hflip"),
    (dict(augment=[{"name": "rotation", "angle": 3}]), r"data.augment.rotation.angle=3 is not a setting; allowed: degrees"),
    (dict(augment=[{"name": "hflip", "p": 2}]), r"data.augment.hflip.p=2; allowed: a number in \[0, 1\]"),
    (dict(train_size=0), r"data.train_size=0; allowed: an integer >= 2"),
    (dict(batch_size=0), "data.batch_size=0; allowed: an integer >= 1"),
    (dict(data_dir="mine"), "data.data_dir=mine is not read by data.dataset=digits"),
    (dict(fake_size=10), "data.fake_size=10 is not read by data.dataset=digits"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageDataModule(**kwargs)


def test_clean_training_subset_is_fixed_stratified_and_as_large_as_validation():
    dm = ImageDataModule(augment=[])
    dm.setup()
    clean = dm.train_clean_set
    assert len(clean) == len(dm.val_set) == 180
    # drawn from the training split: every clean image is a training image
    train = {tuple(x.flatten().tolist()) for x in dm.train_set.images}
    assert all(tuple(x.flatten().tolist()) in train for x in clean.images)
    # stratified: each class's share within one sample of its share in the training split
    share = torch.bincount(dm.train_set.labels, minlength=10) / len(dm.train_set)
    assert (torch.bincount(clean.labels, minlength=10) - share * len(clean)).abs().max() <= 1
    again = ImageDataModule(augment=[])
    again.setup()
    assert torch.equal(again.train_clean_set.images, clean.images)


@pytest.mark.parametrize("size,expected", [(0, None), (50, 50), (None, 100)])
def test_clean_training_subset_size(size, expected):
    dm = ImageDataModule(augment=[], train_size=100, clean_train_size=size)
    dm.setup()
    assert (dm.train_clean_set is None) if expected is None else len(dm.train_clean_set) == expected
    loaders = dm.val_dataloader()
    assert isinstance(loaders, list) == (expected is not None)


def test_batch_size_total_is_shared_out_over_processes_and_accumulation():
    dm = ImageDataModule(batch_size=10, batch_size_total=64)
    assert dm.batch_per_process() == 64 and dm.batch_per_process(2) == 32 and dm.batch_per_process(2, 2) == 16
    assert ImageDataModule(batch_size=10).batch_per_process(4, 2) == 10  # without it: batch_size per process
    with pytest.raises(SettingError, match=r"data.batch_size_total=64 cannot be shared out evenly; allowed: a "
                       r"multiple of 3 \(processes 3 x trainer.accumulate_grad_batches 1\)"):
        dm.batch_per_process(3)
    dm.setup("fit")  # an epoch's batches follow the shared-out batch: 1,257 digits / 2 processes / 32
    assert dm.train_batches(2) == 20 and dm.train_batches(1) == 20


def test_the_run_summary_states_the_effective_batch(tmp_path, monkeypatch, capsys):
    import json

    from project.run.cli import ProjectCLI

    monkeypatch.chdir(tmp_path)
    ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--data.batch_size_total=64", "--trainer.accumulate_grad_batches=2",
                     "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
    assert "effective batch     64 = 32 per process x 1 process x 2 accumulated" in capsys.readouterr().out
    summary = json.loads((tmp_path / "logs" / "default" / "version_0" / "summary.json").read_text())
    assert summary["batch"] == {"per_process": 32, "processes": 1, "accumulation": 2, "effective": 64}


def test_test_unused_measures_the_training_images_train_size_leaves_out(make_trainer):
    """unused/acc is the tested weights' accuracy on exactly the training split's samples outside the
    500 trained on, by plain PyTorch; unseen/acc is those and the test split together; trained/acc
    is every one of the 500, however few the epochs' clean subset holds."""
    from project.model.classifier import TEST_ACC, TRAINED_ACC, UNSEEN_ACC, UNUSED_ACC, ImageClassifier

    torch.manual_seed(0)
    dm = ImageDataModule(train_size=500, test_unused=True, clean_train_size=50, augment=[])
    model = ImageClassifier()
    trainer = make_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(model, dm)
    metrics = trainer.test(model, dm, verbose=False)
    logged = {k: v for d in metrics for k, v in d.items()}
    whole = ImageDataModule()
    whole.setup()
    assert len(dm.unused_set) == len(whole.train_set) - 500 == 757
    assert not set(dm.unused_set.index.tolist()) & set(dm.train_set.index.tolist())
    model.eval()

    def right(split) -> int:
        with torch.no_grad():
            return int((model(dm.prepare(split.images)).argmax(1) == split.labels).sum())

    unused, test = right(dm.unused_set), right(dm.test_set)
    assert len(dm.train_clean_set) == 50 and logged[TRAINED_ACC] == pytest.approx(right(dm.train_set) / 500, abs=1e-6)
    assert logged[UNUSED_ACC] == pytest.approx(unused / 757, abs=1e-6)
    assert logged[TEST_ACC] == pytest.approx(test / len(dm.test_set), abs=1e-6)
    assert logged[UNSEEN_ACC] == pytest.approx((unused + test) / (757 + len(dm.test_set)), abs=1e-6)


def test_test_unused_needs_unused_samples_in_memory():
    with pytest.raises(SettingError, match=r"data.test_unused=True has no unused training samples to test; allowed: "
                                           r"true with a data.train_size"):
        ImageDataModule(test_unused=True)
    with pytest.raises(SettingError, match=r"data.test_unused=True is not read from a stream"):
        ImageDataModule(test_unused=True, train_size=100, stream=True)
    everything = ImageDataModule(test_unused=True, train_size=1257)  # the whole training split: nothing more to test
    everything.setup()
    assert everything.unused_set is None and not isinstance(everything.test_dataloader(), list)


def test_how_often_a_run_validates_never_changes_what_it_trains(make_trainer):
    """Each DataLoader iterator draws a seed; the evaluation loaders draw theirs from a generator of
    their own, so validating every epoch or every second one leaves the training shuffles, and the
    weights, exactly as they are (the lab validates every 3 epochs where nothing chooses by it)."""
    from project.model.classifier import ImageClassifier

    weights = []
    for every in (1, 2):
        torch.manual_seed(0)
        model = ImageClassifier()
        make_trainer(max_epochs=4, check_val_every_n_epoch=every, limit_train_batches=5).fit(model, ImageDataModule())
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
