"""Makes conf/ the package lossbench.conf in an installed lossbench (see pyproject.toml)."""
