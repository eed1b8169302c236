"""Evaluation stage (workflow/rules/evaluate.smk): clean and corrupted evaluation, and the
saliency maps of Fig. 1 (the metrics are in core/)."""
