"""The command line, one module per rule file (cli/main.py dispatches)."""
