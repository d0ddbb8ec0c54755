"""Settings as a reader says them: "symmetric noise 40%", not
`dataset.label_noise=0.4, dataset.noise_kind=symmetric`. Headings and group names use these
words; the config keys stay in the CSVs and the Setup, where a user looks for what to override.
"""

from __future__ import annotations

PRECISION = {"16": "float16", "bf16": "bfloat16", "32": "float32", "64": "float64"}


def percent(text: str) -> str:
    try:
        return f"{float(text) * 100:g}%"
    except ValueError:
        return text


def noise_words(rate: str | None, kind: str | None) -> str:
    if rate is not None and percent(rate) == "0%":
        return "clean labels"
    return " ".join(part for part in (kind, "noise", percent(rate) if rate is not None else None)
                    if part)


WORDS = {  # key -> the words for one value of it
    "dataset.imbalance_ratio": lambda v: "balanced classes" if v == "1" else f"imbalance {v}:1",
    "trainer.precision": lambda v: PRECISION.get(v, f"precision {v}"),
    "trainer.loss_scaling": lambda v: "no loss scaling" if v == "none" else f"{v} loss scaling",
    "model.logit_scale": lambda v: f"logit scale {v}",
    "optim.lr": lambda v: f"lr {v}",
    "trainer.epochs": lambda v: f"{v} epochs",
}


def setting_words(settings) -> list[str]:
    """(key, value) pairs, e.g. a group's settings, as words; a key without words of its own as
    its last part, spaced ('batch size 64')."""
    settings = dict(settings)
    out = []
    if "dataset.label_noise" in settings or "dataset.noise_kind" in settings:
        out.append(noise_words(settings.pop("dataset.label_noise", None),
                               settings.pop("dataset.noise_kind", None)))
    for key, value in settings.items():
        words = WORDS.get(key)
        out.append(words(value) if words else f"{key.split('.')[-1].replace('_', ' ')} {value}")
    return out
