from lossbench.signals import run_command

from .cli import main

raise SystemExit(run_command("lossbench.probe", main))
