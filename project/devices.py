"""What runs where: the precision a device can run.

bf16-mixed (the GPU configs' choice) needs a GPU with native bf16 (compute capability 8.0 and up,
Ampere and newer); older GPUs (V100, T4) emulate it slowly, so there 16-mixed with a gradient
scaler is used instead, said in one line. A CPU has no float16 autocast: 16-mixed there runs, and is
recorded, as bf16-mixed.
"""

from __future__ import annotations

import sys


def precision_for(precision: str, accelerator: str | None, cuda_available: bool, native_bf16: bool) -> str:
    """The precision to run: bf16-mixed becomes 16-mixed on a CUDA GPU without native bf16, and
    16-mixed becomes bf16-mixed on a CPU (Lightning runs a CPU's 16-mixed as bf16 autocast anyway,
    while the run's config would record 16-mixed). The device's answers are arguments, so the
    decision is tested without a GPU."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda_available)
    if precision == "bf16-mixed" and on_gpu and cuda_available and not native_bf16:
        return "16-mixed"
    if precision in ("16-mixed", "16") and not on_gpu and accelerator in ("cpu", "auto", None):
        return "bf16-mixed"
    return precision


NOTES = {"16-mixed": "note: this GPU has no native bf16; using precision 16-mixed (with a gradient scaler) instead",
         "bf16-mixed": "note: a CPU has no float16 autocast; using precision bf16-mixed (recorded as such in the "
                       "run's config) instead of 16-mixed"}


def fall_back_to_fp16(trainer) -> None:
    """Applies ``precision_for`` to a trainer config with this machine's answers; the config then
    records what runs."""
    import torch

    precision = str(trainer.get("precision"))
    if precision not in ("bf16-mixed", "16-mixed", "16"):
        return
    cuda = torch.cuda.is_available()
    # including_emulation=False: True (the default) answers yes on GPUs that only emulate bf16.
    native = cuda and precision == "bf16-mixed" and torch.cuda.is_bf16_supported(including_emulation=False)
    chosen = precision_for(precision, trainer.get("accelerator"), cuda, native)
    if chosen != precision:
        print(NOTES[chosen], file=sys.stderr)
        trainer.precision = chosen
