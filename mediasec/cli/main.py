"""``mediasec`` entry point: the verbs of shared/CLI.md, one error-to-exit mapping.

Each verb lives in its own module and registers itself on ``cli``; ``main()`` runs
the group and turns every exception into one line on stderr and a documented exit
code (``mediasec.cli.exits``).
"""

from __future__ import annotations

import signal
import sys
import threading

import click

from mediasec import __version__
from mediasec.cli.exits import CANNOT, INTERRUPTED, report_error

__all__ = ["cli", "main"]


def _version() -> str:
    """The installed package's version (metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("mediasec")
    except PackageNotFoundError:
        return __version__


def _show_version(ctx: click.Context, value: bool) -> None:
    """``--version``: the metadata lookup (a tenth of a second) only when asked."""
    if value and not ctx.resilient_parsing:
        click.echo(f"mediasec, version {_version()}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _p, value: _show_version(ctx, value),
              help="Show the version and exit.")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """DICOM secure media: protect files, build and verify File-sets and discs."""
    if ctx.invoked_subcommand is None:  # bare `mediasec`: the help, and success
        click.echo(ctx.get_help())
        ctx.exit(0)
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    if verbose:
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)


#: verbs whose module alone is imported when the command line names them (a start-up
#: cost paid on every disc checked); anything else imports every verb module
_ONLY = {"verify": "cmd_verify", "ls": "cmd_verify", "extract": "cmd_verify"}


def _register(args: list[str] | None = None) -> None:
    """Import the verb modules; each registers its commands on ``cli``."""
    import importlib

    verb = next((a for a in args or () if not a.startswith("-")), None)
    if verb in _ONLY and "--help" not in (args or ()):
        importlib.import_module(f"mediasec.cli.{_ONLY[verb]}")
        return
    from mediasec.cli import cmd_build, cmd_cms, cmd_verify  # noqa: F401
    from mediasec.cli import cmd_deid  # noqa: F401
    from mediasec.cli import cmd_net  # noqa: F401
    from mediasec.cli import cmd_sign  # noqa: F401


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) arrived: unwind like Ctrl-C, so that every temporary output is
    removed and the worker pool shut down, then exit 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, _frame) -> None:
    raise Terminated(signum)


def _install_handlers() -> dict:
    """SIGTERM/SIGHUP -> ``Terminated`` (Python's default would end the process at once,
    skipping every cleanup); only from the main thread (a library caller's thread keeps
    its own handling)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        old[sig] = signal.signal(sig, _on_signal)
    return old


def main(argv: list[str] | None = None) -> int:
    old = _install_handlers()
    try:
        return _main(argv)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _register(args)
    verbose = "--verbose" in args or "-v" in args
    try:
        rv = cli.main(args=argv, prog_name="mediasec", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            print("mediasec: interrupted", file=sys.stderr)
            return INTERRUPTED
        print("mediasec: aborted", file=sys.stderr)
        return CANNOT
    except click.exceptions.ClickException as exc:
        print(f"mediasec: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return exc.exit_code if exc.exit_code else CANNOT
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        print("mediasec: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Terminated as exc:
        print(f"mediasec: terminated ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum
    except BaseException as exc:  # noqa: BLE001 - the one place that maps everything
        if isinstance(exc, SystemExit):
            return int(exc.code or 0)
        return report_error(exc, verbose=verbose)
    return int(rv or 0)


if __name__ == "__main__":  # run as the package module, not as a second copy of this one
    from mediasec.cli.main import main as _entry
    sys.exit(_entry())
