from lossbench.app import cli

cli()
