"""Outputs (workflow/rules/outputs.smk and review.smk): the summary table, sanity checks, figures,
tables, diagnostics, and the compute estimate."""
