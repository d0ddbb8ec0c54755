"""`hydra/launcher=batched`: the seeds of each configuration of a sweep trained as one stack."""
