"""Shared code for the stage scripts: audio and features, labels, splits, datasets, training loop, metrics, plots, CLI.

Importing it first (every stage script does) makes Ctrl-C end a stage with one line and exit status 130 even while
the slow imports (torch, librosa) are still running, before the stage's own error handling (cli.run_main) is in
place, and remembers it when a library swallows the KeyboardInterrupt, so the stage does not report success.
"""
import os
import signal
import sys
import threading

INTERRUPTED = "interrupted: finished outputs are kept; re-run (with --resume for training) to continue"
_ctrl_c = threading.Event()


def _on_ctrl_c(signum, frame) -> None:
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


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, _on_ctrl_c)
    sys.excepthook = _excepthook
