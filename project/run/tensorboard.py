"""The run's logger: Lightning's TensorBoardLogger with its settings spelled out.

jsonargparse reads a class's settings from its signature. Lightning's TensorBoardLogger takes
``**kwargs`` and passes them on (to Fabric's logger, then to torch's SummaryWriter), so jsonargparse
reads the source of all three to find them: 0.12 s of every command's start-up, spent before the
command does anything. The same logger with an explicit signature costs nothing to read.
"""

from __future__ import annotations

from lightning.pytorch.loggers import TensorBoardLogger


class TensorBoard(TensorBoardLogger):
    """Lightning's TensorBoardLogger (``<save_dir>/<name>/version_N/``), every setting named.

    Any logger Lightning takes is still one ``class_path`` away in a config, Lightning's own
    TensorBoardLogger with all of SummaryWriter's settings included."""

    def __init__(self, save_dir: str = "logs", name: str | None = "default", version: int | str | None = None,
                 log_graph: bool = False, default_hp_metric: bool = True, prefix: str = "",
                 sub_dir: str | None = None, max_queue: int = 10, flush_secs: int = 120):
        """
        Args:
            save_dir: the folder of every run's logs.
            name: the experiment's folder under save_dir (null or "": none).
            version: the run's folder under name; null: the next free version_N.
            log_graph: add the network's graph to TensorBoard (needs an example input).
            default_hp_metric: log a placeholder hp_metric (the HParams tab shows the run's real
                figures: project/run/hparams.py).
            prefix: put before every metric's name.
            sub_dir: a folder under the run's folder for the event files.
            max_queue: events held in memory before they are written (torch's SummaryWriter).
            flush_secs: the longest a written event waits in memory, in seconds (SummaryWriter).
        """
        super().__init__(save_dir, name=name, version=version, log_graph=log_graph,
                         default_hp_metric=default_hp_metric, prefix=prefix, sub_dir=sub_dir,
                         max_queue=max_queue, flush_secs=flush_secs)
