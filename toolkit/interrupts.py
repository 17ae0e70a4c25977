"""Ctrl-C (or SIGTERM) ends a stage with one line and exit status 130, at any moment, and is remembered if a library swallows it.

Two phases. During start-up (the slow imports of torch, librosa, scikit-learn) nothing has been written yet, so the
handler exits at once: raising KeyboardInterrupt there would land inside some library's import, where a `finally`,
a destructor or a half-initialised module can turn it into a traceback. Each stage script installs that handler
as its first statement (`quit_on_ctrl_c_during_startup`); importing this package installs nothing. Once the
stage's own error handling is in place (cli.run_main calls `raise_on_ctrl_c`), Ctrl-C raises KeyboardInterrupt so
that `finally` blocks run, temporary files are removed and finished outputs are kept.
"""
import os
import signal
import sys
import threading

INTERRUPTED = "interrupted: finished outputs are kept; re-run (with --resume for training) to continue"
_ctrl_c = threading.Event()


def _quit(signum, frame) -> None:
    _ctrl_c.set()
    os.write(2, (INTERRUPTED + "\n").encode())  # not print(): it may be a signal inside a print during an import
    os._exit(130)


def _raise(signum, frame) -> None:
    _ctrl_c.set()
    raise KeyboardInterrupt


def _excepthook(kind, value, traceback) -> None:
    if issubclass(kind, KeyboardInterrupt):
        print(INTERRUPTED, file=sys.stderr, flush=True)
        os._exit(130)
    sys.__excepthook__(kind, value, traceback)


def was_interrupted() -> bool:
    """True once Ctrl-C was pressed in this process, even if something caught the KeyboardInterrupt."""
    return _ctrl_c.is_set()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def quit_on_ctrl_c_during_startup() -> None:
    """Call first in a stage script's `__main__`, before its slow imports: a Ctrl-C or SIGTERM (kill, timeout, a job
    scheduler) until run_main starts the stage prints the one line and exits 130 (nothing is written before that)."""
    if _in_main_thread():
        signal.signal(signal.SIGINT, _quit)
        signal.signal(signal.SIGTERM, _quit)  # default: killed without a word (status -15)
        sys.excepthook = _excepthook


def raise_on_ctrl_c() -> None:
    """From here on Ctrl-C raises KeyboardInterrupt (run_main turns it into the one line), so cleanup runs."""
    if _in_main_thread():
        signal.signal(signal.SIGINT, _raise)
