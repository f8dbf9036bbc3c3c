"""The README's commands work as written after ``make run`` / ``make venv``.

The dependencies live in the ``.venv`` that ``make`` builds, so a README that
says ``python run_prediction_direct.py`` fails on a fresh clone with
``ModuleNotFoundError: pandas``. The convention: a Python command is written
``.venv/bin/python …`` (a tool of the venv ``.venv/bin/…``) or as a ``make``
target; the only bare ``python3`` commands are those meant for any machine
(``test-async-api.py`` needs only requests). Every such command, in code
blocks and in inline code, is checked: the script, module or target exists,
``--help`` of each Python entry point exits 0, and each ``--option`` the
README uses is one the entry point knows (``make -n`` for make targets).
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

README = REPO / "README.md"
VENV_BIN = ".venv/bin/"
# Bare interpreter commands the README may show: the checker operators run from
# any machine (requests only, see requirements-client.txt) and installing it.
ANY_MACHINE = re.compile(r"^python3 (test-async-api\.py\b|-m pip install\b)")
# A command (with arguments; a bare word is prose) run by whatever is on PATH.
BARE = re.compile(r"^(python3?|gunicorn|pip3?|pytest|ruff)\s+\S")
# Prose about the convention itself: ".venv/bin/python …".
PLACEHOLDER = re.compile(r"^\S+\s+(…|\.\.\.)$")
_OPTION = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")


def _logical_lines(block: list[str]) -> list[str]:
    """Lines of a code block with ``\\`` continuations joined and comments cut."""
    out: list[str] = []
    pending = ""
    for raw in block:
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return [re.split(r"\s+#\s", ln.strip(), maxsplit=1)[0].strip() for ln in out]


@functools.cache
def readme_commands() -> list[str]:
    """Every command-looking piece of the README: code-block lines and inline code,
    each ``a && b`` split in its parts."""
    found: list[str] = []
    block: list[str] | None = None
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            if block is None:
                block = []
            else:
                found += _logical_lines(block)
                block = None
            continue
        if block is not None:
            block.append(line)
        else:
            found += [m.strip() for m in re.findall(r"`([^`\n]+)`", line)]
    parts = [p.strip() for cmd in found for p in cmd.split("&&")]
    return [p for p in parts if p]


def venv_python_commands() -> list[str]:
    return [c for c in readme_commands()
            if c.startswith(VENV_BIN + "python ") and not PLACEHOLDER.match(c)]


def make_commands() -> list[str]:
    return [c for c in readme_commands() if re.match(r"^make(\s|$)", c)]


def _entry(cmd: str) -> tuple[str, ...]:
    """``('-m', module)`` or ``(script,)`` of a ``.venv/bin/python`` command."""
    tokens = shlex.split(cmd)
    assert len(tokens) >= 2, cmd
    if tokens[1] == "-m":
        return ("-m", tokens[2])
    return (tokens[1],)


@functools.cache
def _help(entry: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *entry, "--help"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)


def test_the_readme_has_the_commands_this_test_expects() -> None:
    cmds = readme_commands()
    assert any("run_prediction_direct.py" in c for c in venv_python_commands()), cmds
    assert any("import_results.py" in c for c in venv_python_commands())
    assert any(c.startswith("make run") for c in make_commands())
    assert any(c.startswith("python3 test-async-api.py") for c in cmds)


def test_no_command_needs_an_interpreter_with_the_dependencies_on_its_path() -> None:
    """``python x.py`` only works where pandas, CatBoost, ... are importable:
    after ``make run`` that is ``.venv/bin/python``."""
    bare = [c for c in readme_commands() if BARE.match(c) and not ANY_MACHINE.match(c)]
    assert bare == [], "README commands that fail on a fresh clone; write .venv/bin/python " \
                       f"… or a make target: {bare}"


@pytest.mark.parametrize("cmd", sorted(set(venv_python_commands())))
def test_venv_python_command_exists_and_takes_its_options(cmd: str) -> None:
    entry = _entry(cmd)
    if entry[0] == "-m":
        import importlib.util

        assert importlib.util.find_spec(entry[1]) is not None, f"no module {entry[1]}: {cmd}"
    else:
        assert (REPO / entry[0]).is_file(), f"no script {entry[0]}: {cmd}"
    helped = _help(entry)
    assert helped.returncode == 0, f"{cmd}\n{helped.stderr[-2000:]}"
    assert "usage" in helped.stdout.lower(), helped.stdout[:500]
    unknown = [o for o in _OPTION.findall(cmd) if o not in helped.stdout]
    assert unknown == [], f"options not in `{' '.join(entry)} --help`: {unknown}"


@pytest.mark.parametrize("cmd", sorted({c for c in readme_commands()
                                        if c.startswith(VENV_BIN)
                                        and not c.startswith(VENV_BIN + "python ")}))
def test_venv_tool_command_exists(cmd: str) -> None:
    tool = shlex.split(cmd)[0].removeprefix(VENV_BIN)
    assert (Path(sys.executable).parent / tool).exists(), cmd
    if tool == "gunicorn":
        module, _, attr = shlex.split(cmd)[1].partition(":")
        assert (REPO / f"{module}.py").is_file() and attr, cmd


@functools.cache
def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"(?m)^([A-Za-z][\w.-]*)\s*:(?!=)", text))


@pytest.mark.parametrize("cmd", sorted(set(make_commands())))
def test_make_command_names_a_target(cmd: str) -> None:
    words = shlex.split(cmd)[1:]
    targets = [w for w in words if "=" not in w and not w.startswith("-")]
    assert targets, cmd
    missing = [t for t in targets if t not in makefile_targets()]
    assert missing == [], f"not Makefile targets: {missing} ({cmd})"
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "-C", str(REPO), *words], capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert dry.returncode == 0, f"make -n {' '.join(words)}:\n{dry.stderr}"


def test_any_machine_commands_name_what_exists() -> None:
    for cmd in readme_commands():
        if ANY_MACHINE.match(cmd):
            tokens = shlex.split(cmd)
            named = [t for t in tokens if t.endswith((".py", ".txt"))]
            assert named and all((REPO / t).is_file() for t in named), cmd
