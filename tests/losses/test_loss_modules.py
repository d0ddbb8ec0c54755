"""The losses' discovery contract: a loss is one module `lossbench/losses/<name>.py` registering
one spec named <name>, plus its `conf/loss/<name>.yaml`; the registry finds the modules, and a
module without its YAML, or a YAML naming a loss without a module, is refused by name."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from conftest import compose_config
from lossbench.losses import LOSSES, loss_modules, spec_of

ROOT = Path(__file__).resolve().parents[2]


def yaml_losses() -> dict[str, str]:
    """conf/loss/<stem>.yaml -> the loss it composes to (presets such as apl_mae name mae)."""
    return {path.stem: compose_config(f"loss={path.stem}").loss.name
            for path in sorted((ROOT / "conf" / "loss").glob("*.yaml"))}


def contract_problems(modules: list[str], yamls: dict[str, str]) -> list[str]:
    problems = [f"lossbench/losses/{name}.py has no conf/loss/{name}.yaml naming it"
                for name in modules if yamls.get(name) != name]
    problems += [f"conf/loss/{stem}.yaml names loss {name!r}, which has no module "
                 f"lossbench/losses/{name}.py" for stem, name in yamls.items() if name not in modules]
    return problems


def test_every_loss_module_has_its_yaml_and_every_yaml_names_a_loss_module():
    assert contract_problems(loss_modules(), yaml_losses()) == []


def test_the_registry_is_the_loss_modules_each_registering_its_own_name():
    assert sorted(LOSSES) == loss_modules()
    assert all(spec.name == name for name, spec in LOSSES.items())


def test_a_module_without_yaml_and_a_yaml_without_module_are_named():
    yamls = yaml_losses()
    del yamls["poly1"]
    yamls["hinge"] = "hinge"
    assert contract_problems(loss_modules(), yamls) == [
        "lossbench/losses/poly1.py has no conf/loss/poly1.yaml naming it",
        "conf/loss/hinge.yaml names loss 'hinge', which has no module lossbench/losses/hinge.py"]


@pytest.mark.parametrize("spec, found", [(None, "no SPEC"), (LOSSES["ce"], "SPEC = 'ce'")])
def test_a_loss_module_must_register_one_spec_named_as_it(spec, found):
    module = types.ModuleType("lossbench.losses.hinge")
    if spec is not None:
        module.SPEC = spec
    with pytest.raises(TypeError, match=f"lossbench/losses/hinge.py must define SPEC.*{found}"):
        spec_of("hinge", module)
