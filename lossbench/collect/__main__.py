from lossbench.runs.collect import main
from lossbench.signals import run_command

raise SystemExit(run_command("lossbench.collect", main))
