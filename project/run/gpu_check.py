"""``make gpu-check``: what this project does on a GPU, verified once on the user's machine.

No GPU was lent to the sessions that wrote the GPU paths, so this script is how they get checked:
each check runs the real CLI (``python -m project fit``) on the digits, reads what the run wrote,
and prints one line, ``ok``, ``FAILED`` or ``skipped`` with what it saw. A few minutes on a GPU.

    make gpu-check                       # the GPU checks, report in logs/gpu_check/report.txt
    python -m project.run.gpu_check --accelerator cpu   # the same script on the CPU (its own test)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

from project.devices import gpu_facts, precision_for

REPO = Path(__file__).resolve().parents[2]
PROBE_ENV = "PROJECT_GPU_CHECK_PROBE"
STOP_ENV = "PROJECT_GPU_CHECK_STOP_AFTER"  # the probe stops fit after this many epochs (a run cut short)
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--early_stopping=null"]


class Probe(Callback):
    """Added to a checked run from the command line: writes what the run really did to $PROJECT_GPU_CHECK_PROBE."""

    def __init__(self):
        self.seen: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.seen:
            return
        images = batch[0]
        convs = [m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d)]
        dm = trainer.datamodule
        generator = getattr(getattr(dm, "augmentation", None), "generator", None)
        loader = trainer.train_dataloader
        self.seen = {
            "batch_device": str(images.device), "batch_dtype": str(images.dtype),
            "stored_dtype": str(dm.train_set.head(1).dtype), "pin_memory": bool(getattr(loader, "pin_memory", False)),
            "channels_last": bool(convs) and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs),
            "augment_device": str(generator.device) if generator is not None else None,
            "precision": str(trainer.precision), "world_size": trainer.world_size,
            "sync_batchnorm": any(isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules()),
        }

    def on_train_epoch_end(self, trainer, pl_module):
        if os.environ.get(STOP_ENV) and trainer.current_epoch + 1 >= int(os.environ[STOP_ENV]):
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module):
        penalty = trainer.callback_metrics.get("train/penalty")
        self.seen["penalty"] = None if penalty is None else float(penalty)
        if trainer.is_global_zero and os.environ.get(PROBE_ENV):
            Path(os.environ[PROBE_ENV]).write_text(json.dumps(self.seen))


class Checker:
    def __init__(self, accelerator: str, folder: Path, quick: bool):
        self.accelerator, self.folder, self.quick = accelerator, folder, quick
        self.lines: list[str] = []
        self.failed = 0

    def say(self, status: str, what: str) -> None:
        line = f"{status:8s} {what}"
        self.lines.append(line)
        self.failed += status == "FAILED"
        print(line, flush=True)

    def check(self, ok: bool, what: str, seen: str) -> None:
        self.say("ok" if ok else "FAILED", f"{what}: {seen}")

    def fit(self, name: str, *flags: str, stop_after: str = "") -> tuple[subprocess.CompletedProcess, dict]:
        """A real ``project fit`` in this check's folder, with the probe; its output and what the probe saw."""
        probe = self.folder / f"{name}.probe.json"
        limit = ["--trainer.limit_train_batches=5", "--trainer.limit_val_batches=2"] if self.quick else []
        env = {**os.environ, PROBE_ENV: str(probe), STOP_ENV: stop_after,
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        run = subprocess.run([sys.executable, "-m", "project", "fit", f"--trainer.accelerator={self.accelerator}",
                              "--trainer.callbacks+=project.run.gpu_check.Probe", f"--trainer.logger.init_args.name={name}",
                              *QUIET, *limit, *flags], cwd=self.folder, env=env, capture_output=True, text=True,
                             timeout=900)
        (self.folder / f"{name}.log").write_text(run.stdout + run.stderr)
        seen = json.loads(probe.read_text()) if probe.is_file() else {}
        return run, seen

    def failure(self, name: str, run: subprocess.CompletedProcess) -> bool:
        if run.returncode == 0:
            return False
        last = (run.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        self.say("FAILED", f"{name}: project fit exited {run.returncode}: {last} (log: {self.folder / name}.log)")
        return True

    def last(self, name: str) -> dict:
        return torch.load(self.folder / "logs" / name / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu",
                          weights_only=True)


def check_precision(c: Checker) -> str:
    """The precision this GPU should run, asked without initialising CUDA here."""
    if c.accelerator == "cpu":
        c.say("skipped", "precision choice: the CPU has no bf16/16-mixed choice to make")
        return "32-true"
    facts = gpu_facts(0, fork=True)
    c.check(not torch.cuda.is_initialized(), "device queries leave CUDA uninitialised in the launching process",
            f"torch.cuda.is_initialized() = {torch.cuda.is_initialized()} after asking the GPU from a child")
    chosen = precision_for("bf16-mixed", "gpu", True, facts["native_bf16"])
    c.say("ok", f"GPU 0: compute capability {facts['capability'][0]}.{facts['capability'][1]}, native bf16 "
          f"{facts['native_bf16']}, {facts['free'] / 2**30:.1f} of {facts['total'] / 2**30:.1f} GiB free: "
          f"bf16-mixed runs as {chosen}")
    return chosen


def check_fit(c: Checker, precision: str) -> None:
    run, seen = c.fit("fit", "--trainer.devices=1", f"--trainer.precision={precision}", "--trainer.max_epochs=2",
                      "--data.augment=[hflip, rotation]", "--penalty.l2=0.001", "--model.channels_last=true",
                      f"--data.pin_memory={c.accelerator == 'gpu'}")
    if c.failure("fit", run):
        return
    device = "cuda" if c.accelerator == "gpu" else "cpu"
    c.check(seen.get("precision") == precision, "precision", f"the trainer ran {seen.get('precision')}")
    c.check(seen.get("stored_dtype") == "torch.uint8" and seen.get("batch_device", "").startswith(device)
            and seen.get("batch_dtype") == "torch.float32",
            "uint8 images copied to the device, made float there",
            f"stored {seen.get('stored_dtype')}, pinned {seen.get('pin_memory')}, batches arrive on "
            f"{seen.get('batch_device')} as {seen.get('batch_dtype')}")
    c.check(bool(seen.get("channels_last")), "channels_last", f"conv weights channels_last: {seen.get('channels_last')}")
    c.check(str(seen.get("augment_device", "")).startswith(device), "augmentation on the device",
            f"its generator lives on {seen.get('augment_device')}")
    penalty = seen.get("penalty")
    c.check(penalty is not None and penalty == penalty and penalty > 0, f"the L2 penalty under {precision}",
            f"train/penalty = {penalty}")
    acc = json.loads((c.folder / "logs" / "fit" / "version_0" / "summary.json").read_text())["test"]["test/acc"]
    c.check(acc > (0.3 if c.quick else 0.8), "a short fit learns", f"test accuracy {acc:.3f} after 2 epochs")


def check_resume(c: Checker, precision: str) -> None:
    flags = ["--trainer.devices=1", f"--trainer.precision={precision}", "--trainer.deterministic=true",
             "--data.augment=[hflip, rotation]", "--test_after_fit=false", "--trainer.max_epochs=2"]
    for name, extra, stop in (("whole", [], ""), ("cut", [], "1"), ("cut", ["--ckpt_path=last"], "")):
        run, _ = c.fit(name, *flags, *extra, stop_after=stop)
        if c.failure(name, run):
            return
    whole, resumed = c.last("whole"), c.last("cut")
    diff = max((whole["state_dict"][k].float() - resumed["state_dict"][k].float()).abs().max().item()
               for k in whole["state_dict"])
    c.check(whole["global_step"] == resumed["global_step"] and diff == 0, "cut after 1 of 2 epochs, resumed with "
            "--ckpt_path last, ends bit-identical to the uninterrupted run",
            f"step {resumed['global_step']} of {whole['global_step']}, largest weight difference {diff:.2e}")
    if c.accelerator != "gpu":
        return
    run, seen = c.fit("cut", "--trainer.accelerator=cpu", "--trainer.precision=32-true", "--trainer.max_epochs=3",
                      "--data.augment=[hflip, rotation]", "--test_after_fit=false", "--ckpt_path=last")
    c.check(run.returncode == 0 and "another kind of device" in run.stderr,
            "a GPU checkpoint resumed on the CPU", f"exit {run.returncode}, the augmentation stream restarts with a note")


def check_fork(c: Checker, precision: str) -> None:
    if c.accelerator != "gpu":
        c.say("skipped", "ddp_fork on a GPU: needs a GPU")
        return
    run, seen = c.fit("fork", "--trainer.strategy=ddp_fork", "--trainer.devices=1", f"--trainer.precision={precision}",
                      "--trainer.max_epochs=1", "--test_after_fit=false")
    c.check(run.returncode == 0 and "re-initialize CUDA" not in run.stderr, "ddp_fork (the strategy notebooks use)",
            f"exit {run.returncode}; the CLI's device queries did not initialise CUDA before the fork")


def check_sync_batchnorm(c: Checker, precision: str) -> None:
    if c.accelerator != "gpu" or torch.cuda.device_count() < 2:
        c.say("skipped", "sync_batchnorm over 2 GPUs: needs 2 GPUs "
              f"({torch.cuda.device_count() if c.accelerator == 'gpu' else 0} here)")
        return
    run, seen = c.fit("ddp", "--config", str(REPO / "configs" / "trainer" / "ddp.yaml"), "--trainer.devices=2",
                      f"--trainer.precision={precision}", "--trainer.max_epochs=1", "--test_after_fit=false")
    if not c.failure("ddp", run):
        c.check(seen.get("sync_batchnorm") and seen.get("world_size") == 2, "sync_batchnorm over 2 GPUs (NCCL)",
                f"{seen.get('world_size')} processes, SyncBatchNorm layers: {seen.get('sync_batchnorm')}")


def check_throughput(c: Checker, precision: str) -> None:
    """Training steps of the default network, batch 256 of 28x28: images per second here against the CPU."""
    from project.model.nn import ConvNet

    def rate(device: str, steps: int) -> float:
        torch.manual_seed(0)
        net = ConvNet((1, 28, 28), 10).to(device)
        optimizer = torch.optim.Adam(net.parameters())
        x, y = torch.randn(256, 1, 28, 28, device=device), torch.randint(0, 10, (256,), device=device)
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        for i in range(steps + 2):  # two warm-up steps
            if i == 2:
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            with torch.autocast(device_type=device, dtype=dtype, enabled=device == "cuda" and precision != "32-true"):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return steps * 256 / (time.perf_counter() - start)

    cpu = rate("cpu", 3 if c.quick else 10)
    if c.accelerator != "gpu":
        c.say("ok", f"throughput: {cpu:,.0f} images/s on the CPU (no GPU to compare)")
        return
    gpu = rate("cuda", 50)
    c.check(gpu > cpu, f"throughput under {precision}", f"{gpu:,.0f} images/s on the GPU, {cpu:,.0f} on the CPU: "
            f"{gpu / cpu:.1f}x")


CHECKS = (check_fit, check_resume, check_fork, check_sync_batchnorm, check_throughput)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu",
                        help="gpu (the check); cpu runs the same script on the CPU, to test the script itself")
    parser.add_argument("--quick", action="store_true", help="5 batches an epoch (the script's own test)")
    parser.add_argument("--out", default="logs/gpu_check", help="where report.txt and the runs' logs go")
    args = parser.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print("gpu-check: torch finds no CUDA GPU on this machine; nothing was verified", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_", dir=out) as folder:
        checker = Checker(args.accelerator, Path(folder).resolve(), args.quick)
        precision = check_precision(checker)
        for check in CHECKS:
            check(checker, precision)
        for log in Path(folder).glob("*.log"):  # kept for a failure's details
            (out / log.name).write_text(log.read_text())
    device = torch.cuda.get_device_name(0) if args.accelerator == "gpu" else "CPU"
    header = (f"gpu-check on {device}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}: "
              f"{checker.failed} failed of {sum(line.startswith(('ok', 'FAILED')) for line in checker.lines)}")
    (out / "report.txt").write_text("\n".join([header, *checker.lines]) + "\n")
    print(f"{header}; report in {out / 'report.txt'}")
    return 1 if checker.failed else 0


if __name__ == "__main__":
    sys.exit(main())
