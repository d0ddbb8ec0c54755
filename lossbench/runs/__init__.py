"""Runs and sweeps: one configured run executed end to end (validate, train, write its files),
the files a run dir holds and the rule for what lossbench may replace in it, a sweep's end
(collecting every run's files into tables, progress, the optional trackers), and the equal-budget
tuning a tuned sweep decides from.

May import lossbench.config, errors, signals, data, losses and training/. report/ only where a
sweep ends by writing its report (sweep.py); the report in turn reads what collect.py writes.
"""
