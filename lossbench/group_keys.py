"""A plain override of a key the chosen dataset or loss does not have (`dataset=multilabel
dataset.grid=3`), refused in one line with the nearest keys before Hydra composes: Hydra's own
refusal ("Could not override ... Key 'grid' not in 'MultilabelConfig'") names the key but not
what was meant. `+dataset.key=...` reaches config.unknown_keys instead.

The choice is read as Hydra reads it: the command line's `dataset=NAME`, else the experiment
preset's `override /dataset: NAME`, else conf/config.yaml's default; a choice swept over several
values (`loss=ce,focal`) is left to Hydra, which composes each job on its own."""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

# group -> the ConfigStore group of its per-choice schemas (conf/<group>/<choice>.yaml names one)
SCHEMA_GROUPS = {"dataset": "dataset_schema", "loss": "loss_schema"}
PLAIN = re.compile(r"^(dataset|loss)\.(\w+)(?:[.=])")
SWEPT = re.compile(r"[,(]")


def _group_default(conf: Path, group: str, preset: Optional[str]) -> Optional[str]:
    """The choice a preset overrides, else the primary config's default."""
    sources = [conf / "experiment" / f"{preset}.yaml"] if preset else []
    for source in [*sources, conf / "config.yaml"]:
        if not source.is_file():
            continue
        for item in OmegaConf.load(source).get("defaults") or []:
            if isinstance(item, (dict, type(OmegaConf.create({})))):
                for key, value in dict(item).items():
                    if str(key).replace("override ", "").strip().lstrip("/") == group:
                        return None if value is None else str(value)
    return None


def _schema_name(conf: Path, group: str, choice: str, depth: int = 0) -> Optional[str]:
    """The schema a choice's YAML names, following a choice that builds on another (apl_sce: sce)."""
    path = conf / group / f"{choice}.yaml"
    if depth > 5 or not path.is_file():
        return None
    for item in OmegaConf.load(path).get("defaults") or []:
        text = str(item)
        prefix = f"/{SCHEMA_GROUPS[group]}/"
        if text.startswith(prefix):
            return text[len(prefix):].split("@")[0]
        if text != "_self_" and "/" not in text:
            return _schema_name(conf, group, text, depth + 1)
    return None


def problems(args: list[str], conf: Path, schemas: dict[str, dict[str, type]]) -> list[str]:
    """One line per plain `dataset.KEY=`/`loss.KEY=` override whose key the chosen schema lacks.
    `schemas`: group -> {schema name: its dataclass}."""
    plain = [(m.group(1), m.group(2)) for m in map(PLAIN.match, args) if m]
    if not plain:
        return []
    chosen: dict[str, str] = {}
    preset = None
    for arg in args:
        key, _, value = arg.partition("=")
        if key in SCHEMA_GROUPS:
            chosen[key] = value
        elif key in ("experiment", "+experiment"):
            preset = value
    if preset is not None and SWEPT.search(preset):
        return []
    found = []
    for group, key in plain:
        choice = chosen.get(group) or _group_default(conf, group, preset)
        if not choice or SWEPT.search(choice):
            continue
        schema = schemas[group].get(_schema_name(conf, group, choice) or "")
        if schema is None:
            continue
        keys = [field.name for field in dataclasses.fields(schema)]
        if key in keys:
            continue
        near = difflib.get_close_matches(key, keys, n=1)
        hint = f"did you mean {group}.{near[0]}? " if near else ""
        found.append(f"{group}.{key} is not a key of {group}={choice}; {hint}accepted: "
                     f"{', '.join(sorted(keys))}")
    return found
