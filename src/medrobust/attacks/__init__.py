"""Attacks: the nonrobust-feature set built with core/'s PGD (workflow/rules/nonrobust.smk), and
AutoAttack (workflow/rules/evaluate.smk)."""
