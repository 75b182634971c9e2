"""Stage 3, a run: the command line, every setting checked before any work, checkpoints and
resume, what TensorBoard and the terminal show, and what a run reports.

    cli.py          the LightningCLI subclass: parser, linked arguments, the order of work, exit codes
    checks.py       every setting checked before any work: config rules, built objects, the data's size
    paths.py        paths the file system can hold, writable log folders, a study's name as a folder
    dry_run.py      one batch through the network before any work: output width, forward, loss, input shape
    own_data.py     a data module of the user's own checked before any work: attributes, loaders, a batch
    net_settings.py a network's settings are its class's: help without the data's two, no carry-over
    checkpoints.py  atomic writes, last/interrupted checkpoints, random state, what a resume loads
    stopping.py     a signal to any rank of a DDP run stops every rank after the same batch
    tensorboard.py  the run's logger: Lightning's TensorBoardLogger with its settings spelled out (start-up)
    monitor.py      TensorBoard views: histograms, gradient norms, pictures, the step-wise rate
    hparams.py      TensorBoard's HParams and Custom Scalars tabs
    progress.py     the terminal: a line per epoch or Rich's bar, why fit stopped, Lightning kept quiet
    report.py       what a run reports: the run summary, summary.json, predictions CSV
    lr_find.py      the learning-rate range test (project lr-find) on Lightning's Tuner
    env.py          PL_FIT__DATA__BATCH_SIZE and other per-key variables under a class, passed on as flags
    gpu_check.py    make gpu-check: the GPU paths run for real on the user's GPU

May import: the base modules, ``project.data``, ``project.model`` and this package.
"""
