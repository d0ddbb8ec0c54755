"""The command `python -m lossbench.collect DIR` (__main__.py); what it runs is lossbench.runs.collect."""
