"""Attacks: L-inf PGD with a pluggable objective, the nonrobust-feature set built with it
(workflow/rules/nonrobust.smk), and AutoAttack (workflow/rules/evaluate.smk)."""
