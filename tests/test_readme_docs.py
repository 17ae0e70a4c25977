"""Every command docs/*.md and README.md show is one its script accepts as written: each `python[3] SCRIPT.py ...` line
of their bash blocks goes through the script's own main() up to the end of its flag parsing (nothing runs after it),
so a renamed flag, a dropped choice or a typo in a doc fails here. (tests/test_readme.py runs the README walkthrough.)"""
import argparse
import contextlib
import importlib
import io
import re
import shlex

import pytest

from conftest import ROOT
from toolkit.errors import ToolkitError

DOCS = sorted(ROOT.glob("docs/*.md")) + [ROOT / "README.md"]


def shown_commands() -> list[tuple[str, str]]:
    """(doc, command) for every script command in the docs' bash blocks, continuation lines joined, comments cut; a
    command inside `for F in a b c; do ... done` is checked once per value of F."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", doc.read_text(), flags=re.S):
            loops = {var: values.split() for var, values in re.findall(r"\bfor (\w+) in ([^;]+);", block)}
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"(^|\s)#.*", "", line).strip()
                for command in re.split(r"&&|;|\|", line):
                    if re.search(r"(^|\s)(python3?|torchrun)\s.*?\b\w+\.py\b", command):
                        command = " ".join(command.split())
                        var = next((v for v in loops if re.search(rf"\$\{{?{v}\b", command)), None)
                        for value in loops[var] if var else [None]:
                            found.append((doc.name, re.sub(rf"\$\{{?{var}\}}?", value, command) if var else command))
    return found


class Parsed(Exception):
    """Raised by the patched parse_args once a command's flags are parsed: the rest of main() does not run."""


@pytest.fixture
def parse_only(monkeypatch):
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)


def test_the_docs_show_commands():
    commands = shown_commands()
    assert len(commands) >= 40 and {doc for doc, _ in commands} >= {"README.md", "stages.md", "evaluation.md", "deploy.md"}


@pytest.mark.parametrize("doc,command", shown_commands(), ids=lambda v: v if v.endswith(".md") else v.split(".py")[0].split()[-1])
def test_every_command_in_the_docs_parses_as_written(doc, command, parse_only):
    # a shell variable stands for a value its doc explains (a Slurm array's task): an example value of that form
    command = command.replace("$SLURM_ARRAY_TASK_ID", "0").replace("$SLURM_ARRAY_TASK_COUNT", "4")
    words = shlex.split(command)
    script = next(w for w in words if w.endswith(".py"))
    argv = words[words.index(script) + 1:]
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            module.main(argv)
        except Parsed:
            return
        except ToolkitError as e:  # --config reads its run card while parsing: a doc's example card is not on disk here
            if "--config" in argv and "run card not found" in str(e):
                return
            raise
        except SystemExit as e:
            if e.code == 0 and "--help" in argv:
                return
            pytest.fail(f"{doc}: `{command}` is refused: {err.getvalue().strip()}")
    pytest.fail(f"{doc}: `{command}`: main() returned without parsing its flags")
