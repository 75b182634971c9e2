"""What runs where: the precision a device can run, every rank's state gathered into
one checkpoint, and what a run of several processes says when one of them dies.

bf16-mixed (the GPU configs' choice) needs a GPU with native bf16 (compute capability 8.0 and up,
Ampere and newer); older GPUs (V100, T4) emulate it slowly, so there 16-mixed with a gradient
scaler is used instead, said in one line. A CPU has no float16 autocast: 16-mixed there runs, and is
recorded, as bf16-mixed.
"""

from __future__ import annotations

import json
import subprocess
import sys

from project.errors import first_line


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


def will_fork(strategy) -> bool:
    """Whether the processes of this strategy (a config value or a built Strategy) are forked from
    this one (ddp_fork, ddp_notebook): CUDA initialised here could then not be used in them."""
    launcher = getattr(strategy, "launcher", None)
    if launcher is not None or hasattr(strategy, "root_device"):
        return getattr(launcher, "_start_method", None) == "fork"
    if isinstance(strategy, str):
        return "fork" in strategy or "notebook" in strategy
    init = strategy.get("init_args") if hasattr(strategy, "get") else None
    return bool(init) and init.get("start_method") == "fork"


# Asked of the GPU in a child process where this one must not initialise CUDA.
_ASK = ("import json, sys, torch; i = int(sys.argv[1]); free, total = torch.cuda.mem_get_info(i); "
        "print(json.dumps({'capability': list(torch.cuda.get_device_capability(i)), 'free': free, 'total': total, "
        "'native_bf16': torch.cuda.is_bf16_supported(including_emulation=False)}))")


def gpu_facts(index: int = 0, fork: bool = False) -> dict | None:
    """Compute capability, native bf16, free and total bytes of GPU ``index`` (None without a GPU).
    With ``fork`` they are asked in a child process, so this one does not initialise CUDA."""
    import torch

    if not torch.cuda.is_available():  # NVML-based under Lightning: initialises nothing
        return None
    if fork and not torch.cuda.is_initialized():
        answer = subprocess.run([sys.executable, "-c", _ASK, str(index)], capture_output=True, text=True, timeout=120)
        if answer.returncode != 0:
            raise RuntimeError(f"asking GPU {index} in a child process failed: {answer.stderr.strip()[-300:]}")
        return json.loads(answer.stdout.strip().splitlines()[-1])
    free, total = torch.cuda.mem_get_info(index)
    return {"capability": list(torch.cuda.get_device_capability(index)), "free": free, "total": total,
            # including_emulation=False: True (the default) answers yes on GPUs that only emulate bf16.
            "native_bf16": torch.cuda.is_bf16_supported(including_emulation=False)}


def fall_back_to_fp16(trainer) -> None:
    """Applies ``precision_for`` to a trainer config with this machine's answers; the config then
    records what runs. Nothing here initialises CUDA in a process that will fork."""
    import torch

    precision = str(trainer.get("precision"))
    if precision not in ("bf16-mixed", "16-mixed", "16"):
        return
    cuda = torch.cuda.is_available()
    facts = gpu_facts(0, will_fork(trainer.get("strategy"))) if cuda and precision == "bf16-mixed" else None
    native = bool(facts and facts["native_bf16"])
    chosen = precision_for(precision, trainer.get("accelerator"), cuda, native)
    if chosen != precision:
        print(NOTES[chosen], file=sys.stderr)
        trainer.precision = chosen


# What gloo and NCCL say when the process at the other end of a collective is gone.
PEER_SIGNS = ("closed by peer", "reset by peer", "broken pipe", "connection refused", "remote worker",
              "communicator was aborted", "nccl error", "socket timeout", "timed out")


class PeerLost(RuntimeError):
    """Another process of this run died (killed, out of memory, its node lost): this one stops too."""

    def __init__(self, rank: int, world: int, reason: str, saved: str | None, launcher: str = ""):
        super().__init__(reason)
        self.rank, self.world, self.reason, self.saved, self.launcher = rank, world, reason, saved, launcher

    def line(self) -> str:
        saved = f"saved {self.saved}" if self.saved else "no epoch was saved yet"
        again = {"torchrun": "the same torchrun command on every node, with --ckpt_path last",
                 "slurm": "the same srun command, with --ckpt_path last"}.get(
            self.launcher, "project fit --ckpt_path last (and the same config)")
        return (f"rank {self.rank} of {self.world}: lost a peer process ({self.reason}); training stopped; {saved}; "
                f"resume with: {again}")


def lost_peer(err: BaseException) -> bool:
    """Whether ``err`` says another process of this DDP run is gone (not a bug in this process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    if isinstance(err, (dist.DistBackendError, dist.DistNetworkError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(sign in text for sign in PEER_SIGNS)


_PEERS: list[tuple[str, int]] = []  # (host, pid) of every rank, in rank order, while the group was whole


def register_peers() -> None:
    """Every rank's host and process id, gathered once the group is up (a collective): a rank that
    loses a peer can then say which one went, and how."""
    import os
    import socket

    dist = _distributed()
    if dist is None:
        return
    peers: list = [None] * dist.get_world_size()
    dist.all_gather_object(peers, (socket.gethostname(), os.getpid()))
    _PEERS[:] = peers


def _how_it_ended(pid: int) -> str | None:
    """How a process of this machine ended ("was killed by SIGKILL", "exited with code 1"), "ended"
    when it is not this process's child, None while it runs."""
    import os
    import signal as signals

    try:
        done, status = os.waitpid(pid, os.WNOHANG)  # Lightning's launcher: rank 0 is the others' parent
    except ChildProcessError:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "ended"
        return "ended" if state in ("Z", "X") else None
    if done == 0:
        return None
    if os.WIFSIGNALED(status):
        return f"was killed by {signals.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def who_went(own_rank: int) -> str:
    """``rank 1 (pid 4242) was killed by SIGKILL``: the first rank of this machine whose process is
    gone; "" where none is (a rank on another node, or one that hangs)."""
    import socket

    host = socket.gethostname()
    for rank, (peer_host, pid) in enumerate(_PEERS):
        if rank != own_rank and peer_host == host:
            how = _how_it_ended(pid)
            if how:
                return f"rank {rank} (pid {pid}) {how}"
    return ""


def launched_by() -> str:
    """"torchrun", "slurm" or "" (the project's own command, or Lightning's launcher)."""
    import os

    return "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else "slurm" if "SLURM_JOB_ID" in os.environ else ""


def peer_lost(err: BaseException, saved: str | None) -> PeerLost:
    """The one-line stop for ``err``: this rank, the world, the failure's first line, ``saved`` (the
    checkpoint to resume from) and the launcher to run again."""
    import torch.distributed as dist

    reason = first_line(err, type(err).__name__)
    reason = reason.split("] ", 1)[-1] if reason.startswith("[") else reason  # gloo's source location
    reason = reason.split(". This is typically", 1)[0]
    launcher = launched_by()
    went = who_went(dist.get_rank())
    return PeerLost(dist.get_rank(), dist.get_world_size(), f"{went}; {reason}" if went else reason, saved, launcher)


# Every rank's state in one checkpoint: Lightning writes rank 0's file only.
def _distributed():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def gathered(own) -> list:
    """Every rank's ``own``, in rank order (a collective under DDP: every rank calls it when a
    checkpoint is saved); one process: ``[own]``."""
    dist = _distributed()
    if dist is None:
        return [own]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, own)
    return states


def own_rank(states: list, what: str):
    """This rank's entry of ``gathered`` states, or None (with a note) when the checkpoint was saved
    by fewer processes."""
    dist = _distributed()
    rank = dist.get_rank() if dist is not None else 0
    if rank < len(states):
        return states[rank]
    print(f"note: the checkpoint holds the {what} of {len(states)} process(es); rank {rank} starts a fresh stream",
          file=sys.stderr, flush=True)
    return None


def global_rank() -> int:
    """This process's rank in its DDP run (0 outside one)."""
    dist = _distributed()
    return dist.get_rank() if dist is not None else 0


def leave_process_group() -> None:
    """Lightning leaves the DDP process group open; left to interpreter exit, gloo's threads can
    abort the process ("terminate called without an active exception") after a finished run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
