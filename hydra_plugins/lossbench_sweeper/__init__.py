"""`hydra/sweeper=lossbench`, the default: the basic sweeper composing each job's config once."""
