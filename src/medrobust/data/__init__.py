"""Data stage (workflow/rules/data.smk): the synthetic set, MedMNIST download and preparation,
splits as tensors, and the MedMNIST-C corrupted test sets."""
