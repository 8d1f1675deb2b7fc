"""The README works as written: its Python blocks run, and every ``raekit`` command line in its
shell blocks parses (each subcommand, option and key=value exists)."""

import re
import shlex
from pathlib import Path

import pytest

from raekit.cli import build_parser, main
from raekit.training.config import TrainConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def command_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("raekit "):
                    lines.append(part)
    return lines


def test_the_readme_has_python_and_command_examples():
    assert len(blocks("python")) >= 2 and len(command_lines()) >= 10


@pytest.mark.parametrize("line", command_lines())
def test_readme_command_parses(line):
    words = shlex.split(line)[1:]
    args, extra = build_parser().parse_known_args(words)
    overrides = list(getattr(args, "overrides", None) or []) + extra
    if getattr(args, "config", None) and "=" in args.config:
        overrides.append(args.config)
    for item in overrides:
        key, sep, _ = item.partition("=")
        assert sep, f"{line}: {item!r} is not key=value"
        if args.command in ("train", "reproduce"):
            assert key.replace("-", "_") in TrainConfig.__dataclass_fields__, f"{line}: {key}"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the blocks reload runs/digits-rae-l2, the quick start's run: make a short one
    assert main(["train", "epochs=1", "width=4", "progress=false"]) == 0
    for i, block in enumerate(blocks("python")):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), {})
