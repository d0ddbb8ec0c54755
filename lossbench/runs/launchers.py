"""Launchers that come from an optional extra: refused up front, in one line, when it is missing."""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

# Launcher plugin module -> the extra that installs it.
OPTIONAL = {"hydra_plugins.hydra_ray_launcher": "ray"}


def missing_launcher(launcher: Any) -> Optional[str]:
    """Why the sweep's launcher cannot start here (its plugin is not installed), or None."""
    target = str(launcher.get("_target_", ""))
    for module, extra in OPTIONAL.items():
        if target.startswith(module + ".") and importlib.util.find_spec(module) is None:
            return (f"hydra.launcher._target_={target} is not installed; "
                    f"pip install 'lossbench[{extra}]' (or choose another hydra/launcher)")
    return None
