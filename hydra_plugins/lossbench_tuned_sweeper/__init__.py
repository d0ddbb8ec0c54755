"""`hydra/sweeper=tuned`: tune each loss with the same budget on validation, then compare the chosen settings."""
