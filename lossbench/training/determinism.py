"""torch's deterministic algorithms on, without importing its compiler.

torch.use_deterministic_algorithms also sets Inductor's `deterministic` flag, and to do so imports
torch._inductor.config, which brings torch._dynamo and sympy (over a second of a run's start-up).
lossbench compiles nothing, so it sets the flag the eager kernels read, and Inductor's only
where something has loaded Inductor already.
"""

from __future__ import annotations

import sys

import torch


def use_deterministic_algorithms() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True): CUDA ops without a deterministic
    kernel warn instead of stopping the run."""
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
