import sys

__version__ = "0.1.0"

# `python -m lossbench[.command]` imports this package before the command (sys.argv[0] is "-m"
# until then, as Python documents): until the command sets up its own handling, a stop signal
# exits at once with its exit code instead of a traceback from whichever import it interrupted.
if sys.argv[:1] == ["-m"]:
    from lossbench.signals import exit_at_once, install

    install(exit_at_once)
