"""Evaluation stage (workflow/rules/evaluate.smk): metrics, clean and corrupted evaluation, and
the saliency maps of Fig. 1."""
