"""What runs where: the precision a device can run.

bf16-mixed (the GPU configs' choice) needs a GPU with native bf16 (compute capability 8.0 and up,
Ampere and newer); older GPUs (V100, T4) emulate it slowly, so there 16-mixed with a gradient
scaler is used instead, said in one line.
"""

from __future__ import annotations

import sys


def precision_for(precision: str, accelerator: str | None, cuda_available: bool, native_bf16: bool) -> str:
    """The precision to run: bf16-mixed becomes 16-mixed on a CUDA GPU without native bf16.
    The device's answers are arguments, so the decision is tested without a GPU."""
    if precision == "bf16-mixed" and accelerator in ("gpu", "cuda", "auto") and cuda_available and not native_bf16:
        return "16-mixed"
    return precision


def fall_back_to_fp16(trainer) -> None:
    """Applies ``precision_for`` to a trainer config with this machine's answers."""
    import torch

    precision = str(trainer.get("precision"))
    if precision != "bf16-mixed" or not torch.cuda.is_available():
        return
    # including_emulation=False: True (the default) answers yes on GPUs that only emulate bf16.
    chosen = precision_for(precision, trainer.get("accelerator"), True,
                           torch.cuda.is_bf16_supported(including_emulation=False))
    if chosen != precision:
        print("note: this GPU has no native bf16; using precision 16-mixed (with a gradient scaler) instead",
              file=sys.stderr)
        trainer.precision = chosen
