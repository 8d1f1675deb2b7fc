"""The library below, the commands on top: no library module imports ``raekit.cli``, prints to
standard output, or changes the process's warning filters outside a ``catch_warnings`` block."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import raekit

SRC = Path(raekit.__file__).parent
COMMANDS = ("cli",)  # the command package (its __main__: `python -m raekit.cli`)
LIBRARY = sorted(p for p in SRC.rglob("*.py") if not set(p.relative_to(SRC).parts) & set(COMMANDS))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[:len(parts) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            out.add(prefix)
            out |= {f"{prefix}.{a.name}" for a in node.names}
    return out


def test_the_walk_sees_the_library_and_resolves_relative_imports():
    assert len(LIBRARY) > 20 and SRC / "training" / "trainer.py" in LIBRARY
    assert "raekit.models.registry.build_model" in imported_modules(SRC / "training" / "trainer.py")
    assert all("cli" not in p.parts[-2:] for p in LIBRARY)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(SRC)))
def test_library_module_does_not_import_the_commands(path):
    bad = sorted(m for m in imported_modules(path)
                 if m == "raekit.cli" or m.startswith("raekit.cli."))
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(SRC)))
def test_library_module_does_not_print(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            assert not (isinstance(f, ast.Name) and f.id == "print"), \
                f"{path.relative_to(SRC)}:{node.lineno} prints"
            text = ast.unparse(f)
            assert text not in ("sys.stdout.write", "sys.stdout.writelines"), \
                f"{path.relative_to(SRC)}:{node.lineno} writes to stdout"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(SRC)))
def test_warning_filters_are_scoped(path):
    """Every ``warnings.filterwarnings``/``simplefilter`` sits in a function or ``with`` block
    that also enters ``warnings.catch_warnings()`` (so the filter is undone on exit)."""
    tree = ast.parse(path.read_text())
    scopes = [n for n in ast.walk(tree)
              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.With))]

    def calls(node, name):
        return [c for c in ast.walk(node) if isinstance(c, ast.Call)
                and ast.unparse(c.func).endswith(name)]

    for call in calls(tree, "filterwarnings") + calls(tree, "simplefilter"):
        enclosing = [s for s in scopes
                     if call in list(ast.walk(s)) and calls(s, "catch_warnings")]
        assert enclosing, \
            f"{path.relative_to(SRC)}:{call.lineno} changes the global warning filters"


def test_importing_every_library_module_loads_no_command_module():
    names = [module_name(p) for p in LIBRARY]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError as e:  # an optional extra that is not installed\n"
            "        assert e.name and not e.name.startswith('raekit'), e\n"
            "print(sorted(m for m in sys.modules if m.startswith('raekit.cli')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
