"""Bias and variance in the lecture's terms, and the basic recipe's next step.

    bias     = human-level accuracy - training accuracy    (the training error when human level is 100%)
    variance = training accuracy - validation accuracy    (dev error - training error)

Both use the clean training accuracy (eval mode, no augmentation: ``train/acc_clean``), measured
on the same weights as the validation accuracy. A figure above the tolerance (default 0.02, two
points of accuracy; ``--model.diagnosis_tolerance``) is called high. The basic recipe (Ng,
"Machine Learning Yearning"): fix high bias first (a bigger network, longer training), then high
variance (more data, regularization, augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass

BIAS_STEPS = ("a bigger network (model.net.widths, model.net.hidden)", "train longer (trainer.max_epochs)",
              "a better-tuned optimizer or learning rate (model.optimizer)", "less regularization")
VARIANCE_STEPS = ("more data (data.train_size)", "regularization (penalty.l2, penalty.l1, model.net.dropout, "
                  "model.optimizer.weight_decay)", "augmentation (data.augment)", "early stopping (early_stopping)")


@dataclass(frozen=True)
class Diagnosis:
    train_acc: float
    val_acc: float
    human_accuracy: float
    tolerance: float

    @property
    def bias(self) -> float:
        return self.human_accuracy - self.train_acc

    @property
    def variance(self) -> float:
        return self.train_acc - self.val_acc

    @property
    def verdict(self) -> str:
        high_bias, high_variance = self.bias > self.tolerance, self.variance > self.tolerance
        if high_bias and high_variance:
            return "high bias and high variance"
        if high_bias:
            return "high bias (underfitting)"
        if high_variance:
            return "high variance (overfitting)"
        return "low bias and low variance"

    def lines(self) -> list[str]:
        t = self.tolerance
        lines = [
            f"bias      {self.bias:+.4f}   = human-level {self.human_accuracy:.4f} - clean train accuracy "
            f"{self.train_acc:.4f}  ({'high' if self.bias > t else 'low'}: tolerance {t:g})",
            f"variance  {self.variance:+.4f}   = clean train accuracy {self.train_acc:.4f} - val accuracy "
            f"{self.val_acc:.4f}  ({'high' if self.variance > t else 'low'}: tolerance {t:g})",
            f"verdict   {self.verdict}",
        ]
        if self.bias > t:
            lines.append("next      reduce bias first: " + "; ".join(BIAS_STEPS))
        elif self.variance > t:
            lines.append("next      reduce variance: " + "; ".join(VARIANCE_STEPS))
        else:
            lines.append("next      nothing the recipe asks for; lower model.diagnosis_tolerance to look closer")
        return lines
