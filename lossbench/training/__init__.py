"""Training: a model, its optimiser and lr schedule, the loop that trains it on in-memory tensors
(one run, or a stack of seeds at once), and what the loop measures each epoch (metrics, stability
signals, temperature scaling, the val-selected epoch, per-example test predictions). Also what a
run needs before it trains: the device and the memory it will take.

May import lossbench.errors, lossbench.losses, lossbench.checks and lossbench.data; the config
schema only for a type (brought_models). Never runs/ or report/: the loop hands its records to
whoever called it and writes no file.
"""
