"""The commands tables (README's short one, docs/commands.md's full one) cannot drift from the CLI: each row's
command line, and every option snippet its description gives (`--calibrate N`, `--reset hard/soft`,
`--kd-alpha/--kd-tau`), is parsed by the command's own parser; for the commands that read an input file
first, the snippet also runs through the real entry point (with a missing input) and must not be refused for
the option itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from clihelp import run
from typer.main import get_command

import enofctl.cli

README = Path(__file__).resolve().parents[1] / "README.md"
GUIDE = README.parent / "docs" / "commands.md"  # the full table; README's is the short one
ROOT = get_command(enofctl.cli.app)
PLACEHOLDER = {"N": "1", "MODEL": "resnet18", "S": "2", "F": "0.1", "LAYER=W": "act1=0.1"}
INPUT = {"TEACHER", "T", "STUDENT", "ARTIFACT...", "FILE"}  # a path: the input the command reads


def _rows() -> list[tuple[list[str], str]]:
    rows = []
    for doc in (README, GUIDE):
        text = doc.read_text()
        table = text[text.index("| command | what it does |"):]
        table = table[: table.index("\n\n")]
        for line in table.splitlines()[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((cells[0].strip("`").split()[1:], cells[1]))
    return rows


def _split(words: list[str]):
    """The command path, its click command and the rest of the words."""
    cmd, path = ROOT, []
    while words and words[0] in getattr(cmd, "commands", {}):
        cmd = cmd.commands[words[0]]
        path.append(words.pop(0))
    return path, cmd, words


def _value(word: str, tmp: Path) -> str:
    return str(tmp / "missing.safetensors") if word in INPUT else PLACEHOLDER.get(word, word)


def _snippets(cmd, description: str) -> list[list[str]]:
    """Each option (with its value, each alternative of ``a/b``) the description names in backticks."""
    own = {name: p for p in cmd.params for name in (*p.opts, *p.secondary_opts)}
    out = []
    for snippet in re.findall(r"`(--[^`]+)`", description):
        words = snippet.split()
        for i, word in enumerate(words):
            for name in word.split("/") if word.count("--") > 1 else [word]:
                if not name.startswith("--") or name not in own:
                    continue
                param = own[name]
                if getattr(param, "is_flag", False) or param.nargs == 0:
                    out.append([name])
                elif i + 1 < len(words) and not words[i + 1].startswith("--"):
                    out += [[name, PLACEHOLDER.get(v, v)] for v in words[i + 1].split("/")]
    return out


ROWS = _rows()


@pytest.mark.parametrize("words, description", ROWS, ids=[" ".join(w[:2]) for w, _ in ROWS])
def test_each_command_line_and_option_of_the_table_parses(words: list[str], description: str,
                                                          tmp_path: Path) -> None:
    path, cmd, rest = _split(list(words))
    assert path, f"no such command: {words}"
    args = [_value(w, tmp_path) for w in rest]
    options = [p for p in cmd.params if p.param_type_name == "option"]
    own = {name for p in options for name in (*p.opts, *p.secondary_opts)} | {"--help"}
    for p in options:  # the required options the row leaves out (--out), with a value
        if p.required and not set(p.opts) & set(args):
            args += [p.opts[0], str(tmp_path / ("dir" if cmd.name == "ablate" else "o.safetensors"))]
    name = "enofctl " + " ".join(path)
    cmd.make_context(name, list(args))  # the row's own line
    reads_input = any(w in INPUT for w in rest)
    named = set(re.findall(r"`(--[a-z][a-z0-9-]*)", description))
    assert named <= own, f"the {name} row names options it does not have: {named - own}"
    for snippet in _snippets(cmd, description):
        cmd.make_context(name, [*args, *snippet])
        if reads_input:  # the options' own checks run before the missing input is noticed
            code, _, err = run(*path, *args, *snippet)
            assert code in (1, 2) and "missing.safetensors" in err, (snippet, err)


def test_the_distill_row_names_no_calibrate_zero() -> None:
    """`distill --calibrate 0` is refused (--no-calibrate is the plain copy); the table must not offer it."""
    code, _, err = run("distill", "--teacher", "missing.safetensors", "--calibrate", "0", "--out", "o.safetensors")
    assert code == 2 and "--calibrate" in err
    for distill in (d for w, d in ROWS if w[:1] == ["distill"]):  # README's row and the guide's
        assert "`--no-calibrate`" in distill and "`0`" not in distill
