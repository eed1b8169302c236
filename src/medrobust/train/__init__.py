"""Training stage (workflow/rules/train.smk): the training loop with its standard objective,
TRADES, per-epoch histories, and grid-point selection (the network is in core/)."""
