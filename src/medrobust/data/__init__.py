"""Data stage (workflow/rules/data.smk): the synthetic set, MedMNIST download and preparation,
and the MedMNIST-C corrupted test sets (splits as tensors are in core/)."""
