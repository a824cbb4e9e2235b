"""The `mergesec` command line (`python -m benchmark.cli`). Every command prints one clear error (problem + fix)
on bad input: exit status 2, never a traceback."""

import importlib
import os

from benchmark.cli.app import app
from benchmark.errors import MergesecError, run_main

for _commands in ("sweep", "report", "submissions"):  # each registers its commands on `app`, in `--help`'s order
    importlib.import_module(f"benchmark.cli.{_commands}")

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: MergesecError -> one line on stderr, exit status 2.

    Torch runs on `$MERGESEC_THREADS` threads (default 1): the digits models are tiny, so more threads only
    add contention, and float results are bitwise reproducible only at a fixed thread count.
    """
    import torch

    from benchmark.submissions.lifecycle import on_sigterm, os_error_message

    torch.set_num_threads(int(os.environ.get("MERGESEC_THREADS", "1")))
    on_sigterm()

    def commands() -> None:
        try:
            app()
        except MergesecError:
            raise
        except Exception as e:  # a full disk or an unreadable file: the same one line as a MergesecError
            msg = os_error_message(e)
            if msg is None:
                raise
            raise MergesecError(msg) from e

    run_main(commands)

