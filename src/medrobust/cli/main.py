"""`medrobust <command>`: the entry points the Snakemake rules call (and you can, by hand).

Each command lives in the module named after the rule file that calls it (cli/data.py for
workflow/rules/data.smk, ...); this module only builds the parser and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from medrobust.cli import data, evaluate, nonrobust, outputs, review, train
from medrobust.cli.args import log
from medrobust.core.errors import ConfigError, DataError, DownloadError, Interrupted

EXIT_INTERRUPTED = 143  # as if killed by SIGTERM, so schedulers treat it as a preemption


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medrobust", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for module in (data, train, nonrobust, evaluate, outputs, review):
        module.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, DataError, DownloadError) as e:
        log.error("%s", e)
        return 2
    except Interrupted as e:
        log.warning("%s", e)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
