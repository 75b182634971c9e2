"""What a run reports at its end: the tested weights' figures, the diagnosis, summary.json, predictions.

``project fit`` tests the best checkpoint (or the last weights) and prints ``run_summary``; the same
figures go to ``summary.json`` beside the logs, which make compare reads. ``project predict`` writes
one CSV row per image.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from project.model.classifier import CLEAN_ACC, TEST_ACC, TEST_LOSS, TRAINED_ACC, UNSEEN_ACC, UNUSED_ACC, VAL_ACC, VAL_ACC_BEST
from project.model.diagnosis import Diagnosis
from project.run.checkpoints import write_atomically

SUMMARY_FILE = "summary.json"


def write_summary(log_dir: Path, tested: str | None, best: str | None, epochs: int, weights: dict, test: dict,
                  seconds: float, batch: dict | None = None) -> None:
    """summary.json: which weights were tested, their own figures, the test's, the run's length, and
    its batch (per process, processes, accumulation, effective)."""
    write_atomically(Path(log_dir) / SUMMARY_FILE, json.dumps({
        "tested": "best" if tested else "last", "tested_checkpoint": tested, "best_checkpoint": best,
        "epochs": epochs, "tested_weights": weights, "test": test, "seconds": seconds, "batch": batch}, indent=1))


def batch_line(batch: dict | None) -> str:
    """``64 = 32 per process x 2 processes x 1 accumulated``: what one optimizer step averages over."""
    if not batch or batch.get("per_process") is None:
        return "n/a (the data module has no batch_size)"
    n = batch["processes"]
    return (f"{batch['effective']} = {batch['per_process']} per process x {n} process{'es' if n != 1 else ''} x "
            f"{batch['accumulation']} accumulated")


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())


def run_summary(epochs_run: int, human_accuracy: float, tolerance: float, log_dir: str | None, weights: dict,
                test: dict, best_checkpoint: str | None, tested: str | None, seconds: float,
                batch: dict | None = None) -> str:
    """What the run ended with: the tested weights' test, validation and clean training figures,
    and the bias/variance diagnosis of those same weights."""
    def value(metrics: dict, name: str) -> str:
        return f"{float(metrics[name]):.4f}" if name in metrics else "n/a"

    which = "best checkpoint (by val/loss)" if tested else "last weights"
    lines = [
        "", "Run summary", "-----------",
        f"tested weights      {which}, after epoch {weights.get('epoch', '?')}",
        f"test accuracy       {value(test, TEST_ACC)}",
        f"test loss           {value(test, TEST_LOSS)}",
        *([f"unused train acc    {value(test, UNUSED_ACC)}   (the training samples data.train_size left out)",
           f"unseen accuracy     {value(test, UNSEEN_ACC)}   (the test split and those together)",
           f"trained acc         {value(test, TRAINED_ACC)}   (every training sample, eval mode, no augmentation)"]
          if UNUSED_ACC in test else []),
        f"val accuracy        {value(weights, VAL_ACC)}   (the tested weights)",
        f"clean train acc     {value(weights, CLEAN_ACC)}   (the tested weights, eval mode, no augmentation)",
        f"best val accuracy   {value(weights, VAL_ACC_BEST)}   (any epoch up to then)",
        f"epochs run          {epochs_run}",
        f"effective batch     {batch_line(batch)}",
        f"wall time           {seconds:.1f} s",
        f"logs                {log_dir or 'none (no logger, or fast_dev_run)'}",
        f"best checkpoint     {best_checkpoint or 'none'}",
    ]
    if CLEAN_ACC in weights and VAL_ACC in weights:
        diagnosis = Diagnosis(weights[CLEAN_ACC], weights[VAL_ACC], human_accuracy, tolerance)
        lines += ["", "Diagnosis (bias and variance of the tested weights)", *diagnosis.lines()]
    return "\n".join(lines)


def write_predictions(path: Path, probabilities: torch.Tensor, labels: torch.Tensor, names: list[str]) -> None:
    """One CSV row per sample: its index in the split, true and predicted class, each class's probability."""
    predicted = probabilities.argmax(dim=1)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["index", "true_label", "true_name", "predicted_label", "predicted_name",
                     *(f"p_{name}" for name in names)])
    for i, (row, label, guess) in enumerate(zip(probabilities.tolist(), labels.tolist(), predicted.tolist())):
        writer.writerow([i, label, names[label], guess, names[guess], *(f"{v:.6f}" for v in row)])
    write_atomically(path, text.getvalue())


def effective_batch(datamodule, trainer) -> dict:
    """What one optimizer step averages over: per-process batch x processes x accumulated batches."""
    processes, accumulation = trainer.world_size, trainer.accumulate_grad_batches
    if hasattr(datamodule, "batch_per_process"):
        per_process = datamodule.batch_per_process(processes, accumulation)
    else:  # a data module of the user's own: its batch_size, if it has one
        per_process = getattr(datamodule, "hparams", {}).get("batch_size") or getattr(datamodule, "batch_size", None)
    return {"per_process": per_process, "processes": processes, "accumulation": accumulation,
            "effective": per_process * processes * accumulation if isinstance(per_process, int) else None}
