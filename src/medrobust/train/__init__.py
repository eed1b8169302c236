"""Training stage (workflow/rules/train.smk): the WideResNet, the training loop with its standard
objective, TRADES, per-epoch histories, and grid-point selection."""
