"""A run imports only what it uses: a single-label run never loads scikit-learn, scipy,
matplotlib, statsmodels, torchvision, pandas, the trackers' libraries or torch's compiler stack
(each costs start-up time, and scikit-learn or torch._dynamo alone over a second). Fails when
someone adds such an import on a run's path."""

import json
import subprocess
import sys

# Every one of these is used somewhere in lossbench, but not by a default run (multi-label data and
# metrics import scikit-learn, the report scipy, statsmodels and matplotlib, collect and the report
# pandas, the trackers their clients). torch imports its compiler (torch._dynamo, torch._inductor,
# sympy) at the first computation on the meta device, torch.use_deterministic_algorithms, and
# torch.optim's compile hooks; pyarrow imports pandas at its first conversion of Python values.
NOT_IN_A_RUN = ("sklearn", "scipy", "matplotlib", "statsmodels", "torchvision", "mlflow", "tensorboard",
                "pandas", "torch._dynamo", "torch._inductor", "sympy")

RUN = """
import json, runpy, sys
sys.argv = ["lossbench", *sys.argv[1:]]
try:
    runpy.run_module("lossbench", run_name="__main__")
finally:
    print("MODULES " + json.dumps(sorted(sys.modules)))
"""


def test_a_single_label_run_loads_no_module_it_does_not_use(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", RUN, "dataset.source=sample", "model.hidden=[8]", "trainer.epochs=1",
         "trainer.threads=1", "dataset.label_noise=0.2", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.parquet").exists()  # it did train and write
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES "))
    modules = json.loads(line.removeprefix("MODULES "))
    loaded = sorted({name for name in modules for heavy in NOT_IN_A_RUN
                     if name == heavy or name.startswith(heavy + ".")})
    assert not loaded, f"a run imported {loaded}"
