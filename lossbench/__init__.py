"""lossbench: classification losses compared on evidence. The data flow, folder by folder:
config.py (the typed schema, checked before any data loads) picks a dataset (data/), a loss
(losses/, one module per loss) and a model; training/ trains it and measures each epoch; runs/
writes each run's files and collects a sweep's into tables; report/ reads only those tables;
probe/ measures each loss's float behaviour on its own. app.py is the `python -m lossbench` entry;
errors.py and signals.py are how every command ends (a user mistake, a stop signal); tasks.py
declares each task's baseline loss and primary metric.
"""
import sys

__version__ = "0.1.0"

# `python -m lossbench[.command]` imports this package before the command (sys.argv[0] is "-m"
# until then, as Python documents): until the command sets up its own handling, a stop signal
# exits at once with its exit code instead of a traceback from whichever import it interrupted.
if sys.argv[:1] == ["-m"]:
    from lossbench.signals import exit_at_once, install

    install(exit_at_once)
