"""The ``daskmeans`` command: generate data, fit, predict and inspect, as batch jobs.

Sub-commands::

    daskmeans generate OUT --n-samples N --n-features D --centers K [...]
    daskmeans fit INPUT --k K --out DIR [...]
    daskmeans predict MODEL INPUT --out LABELS
    daskmeans info INPUT|MODEL
    daskmeans scan-k INPUT --k-max K --out DIR
    daskmeans plot MODEL INPUT --out FILE.png
    daskmeans update MODEL INPUT --out DIR
    daskmeans warm-up [--dtype float32|float64|both]

Exit status: 0 on success; 2 for bad usage or bad input (a one-line message on
standard error, no traceback); 1 for any other failure (a one-line message, and
the traceback with ``--verbose``); 130 and 143 when interrupted by SIGINT or
SIGTERM. Every output is written under a temporary name in its destination
directory and renamed when complete. Progress and messages go to standard
error; standard output only carries the ``--json`` document.

Layout (imports go one way: this module -> a sub-command -> ``_fit``'s parts
-> ``_common``; nothing imports back up, ``tests/test_imports.py`` checks)::

    __init__.py      the parser and main(): exit statuses, error mapping
    _common.py       shared pieces: exit codes, option types and groups,
                     scheduler, paths, messages, the label writer, report.json
    _fit.py          fit: the pipeline, an input adapter crossed with an algorithm
    _inputs.py       input adapters (the registry): Parquet table, sparse
                     matrix, xarray Zarr group, Zarr array
    _sources.py      what the pipeline sees of an opened INPUT (Source)
    _sparse.py       the sparse kind: save_npz files, CSR Zarr groups
    _algorithms.py   algorithms (the registry): lloyd, minibatch
    _predict.py, _generate.py, _info.py, _scan_k.py, _plot.py, _update.py,
    _warm_up.py      one sub-command each

Adding a sub-command: write ``daskmeans/cli/_name.py`` whose docstring is a
summary line, then the paragraph ``daskmeans name --help`` shows; give it
``HELP`` (its line in ``daskmeans --help``), ``add_arguments(parser)`` and
``run(args) -> int``. The sub-command is named after the module (``_scan_k``:
``scan-k``). Import only ``._common`` (and siblings such as ``._inputs``) at
module level, NumPy, Dask and the rest of daskmeans inside ``run``, so that
``--help`` stays fast; raise :class:`~daskmeans.cli._common.UsageError` for
bad usage. Then add ``"_name"`` to :data:`COMMANDS`: the one line to change
here.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import traceback
from collections.abc import Sequence
from typing import Any

from ._common import (
    EXIT_FAILURE,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    PROG,
    Parser,
    Terminated,
    common_options,
    error,
    one_line,
    version,
)

__all__ = ["build_parser", "main"]

#: Sub-command modules of this package, in the order of ``daskmeans --help``.
COMMANDS = ("_generate", "_fit", "_predict", "_info", "_scan_k", "_plot", "_update",
            "_warm_up")


def build_parser() -> Parser:
    """The argument parser of the ``daskmeans`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = Parser(
        prog=PROG,
        description="k-means for data larger than memory, on Dask and Zarr, as batch jobs.",
        epilog="exit status: 0 success, 2 bad usage or bad input, 1 any other failure "
               "(130/143 when interrupted by SIGINT/SIGTERM). Run 'daskmeans COMMAND --help' "
               "for the options of each command.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for module in COMMANDS:
        command = importlib.import_module(f"{__name__}.{module}")
        name = module.lstrip("_").replace("_", "-")  # _scan_k: daskmeans scan-k
        sub_parser = sub.add_parser(name, parents=[common], allow_abbrev=False,
                                    help=command.HELP, description=_description(command))
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(handler=command.run)
    return parser


def _description(command) -> str:
    """The ``COMMAND --help`` description: the second paragraph of the module docstring."""
    return command.__doc__.split("\n\n")[1]


def _input_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or usage (exit status 2), not a failure inside.

    :class:`daskmeans._errors.InputError` (the library's validation and the
    command line's :class:`~daskmeans.cli._common.UsageError`), and the
    errors of paths the user gave. A plain ``ValueError`` or ``TypeError``
    from inside the work is an internal error.
    """
    from daskmeans._errors import InputError

    return (InputError, FileNotFoundError, FileExistsError, NotADirectoryError)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``daskmeans`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status: 0 success, 2 bad usage or input, 1 other failure,
        130/143 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    previous = None
    with contextlib.suppress(ValueError):  # not in the main thread
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.handler(args)
    except _input_error_types() as exc:
        error(one_line(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_SIGINT
    except Terminated:
        error("terminated")
        return EXIT_SIGTERM
    except Exception as exc:
        error(f"{type(exc).__name__}: {one_line(exc)}"
              + ("" if args.verbose else " (run with --verbose for the traceback)"))
        if args.verbose:
            traceback.print_exc()
        return EXIT_FAILURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
