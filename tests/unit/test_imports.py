"""The package's import graph, read with `ast`: no module imports itself back, through
any chain of imports, function-local ones included (those run too, only later)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

import claude_cage
from claude_cage import policy

PACKAGE = Path(claude_cage.__file__).parent


def module_name(path: Path) -> str:
    parts = ["claude_cage", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside `if TYPE_CHECKING:`: never imported at run time."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _with_parents(name: str) -> set[str]:
    """Importing a.b.c runs a, a.b and a.b.c: the ones that are ours."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & MODULES.keys()


def imports(module: str) -> set[str]:
    """Every module of ours that `module` imports, at the top or inside a function."""
    tree = ast.parse(MODULES[module].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= _with_parents(node.module)
            for alias in node.names:  # `from package import module`
                found |= _with_parents(f"{node.module}.{alias.name}")
    return found - {module} - {"claude_cage"}  # the root package imports nothing of ours


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_root_package_imports_nothing_of_ours() -> None:
    assert not imports("claude_cage") - {"claude_cage"}


def test_no_import_cycle() -> None:
    graph = {module: imports(module) for module in MODULES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_check_finds_a_cycle() -> None:
    """The check itself can fail: a loop hidden behind a function-local import."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# --- function-local imports --------------------------------------------------------------
# A function-local import hides a module from the reader of the file's head, and can hide
# an import cycle. One stays only where a comment with the word "start-up" says why: on
# the import, on a comment line right above it (or above the group of imports it is in),
# or, in the CLI's command modules, once at the top of the module.

MARKER = "start-up"


def _module_marked(lines: list[str]) -> bool:
    return any(line.startswith("#") and MARKER in line for line in lines)


def _justified(lines: list[str], node: ast.stmt) -> bool:
    own = lines[node.lineno - 1 : (node.end_lineno or node.lineno)]
    if any(MARKER in line for line in own):
        return True
    index = node.lineno - 2
    while index >= 0:
        text = lines[index].strip()
        if not text.startswith(("#", "import ", "from ")) and text:
            return False
        if MARKER in text:
            return True
        index -= 1
    return False


def unexplained_local_imports(path: Path, root: Path = PACKAGE) -> list[str]:
    """`file:line: text` of each function-local import without its reason."""
    text = path.read_text()
    lines = text.splitlines()
    if path.parent.name == "cli" and _module_marked(lines):
        return []
    found = set()  # an import in a nested function is met once per enclosing one
    for function in ast.walk(ast.parse(text)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import | ast.ImportFrom) and not _justified(lines, node):
                found.add(node.lineno)
    return [f"{path.relative_to(root)}:{n}: {lines[n - 1]}" for n in sorted(found)]


def test_local_imports_say_why_they_are_local() -> None:
    found = [line for path in sorted(MODULES.values()) for line in unexplained_local_imports(path)]
    assert found == [], "\n".join(found)


def test_the_local_import_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def a():\n    import json\n\n\n"
        "def b():\n    # start-up: 10 ms\n    import yaml\n    import os\n\n"
        "    x = 1\n    import re\n"
    )
    found = unexplained_local_imports(sample, tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == ["    import json", "    import re"]


def _shadowed(names: set[str]) -> set[str]:
    """Our module names that are also the standard library's or an installed package's."""
    import importlib.metadata
    import sys

    taken = set(sys.stdlib_module_names) | set(importlib.metadata.packages_distributions())
    return names & (taken - {"claude_cage"})


def test_no_module_of_ours_shadows_a_library_or_the_standard_library() -> None:
    # `from claude_cage.operations import secrets` hides the standard library's `secrets`
    # in that file; a module named `requests` confuses every reader of a traceback.
    ours = {name.rsplit(".", 1)[-1] for name in MODULES} - {"__main__"}
    assert _shadowed(ours) == set()


def test_the_shadow_check_can_fail() -> None:
    assert _shadowed({"secrets", "requests", "hostgit"}) >= {"secrets"}


# --- one context per command ------------------------------------------------------------

# What only context.py makes: module -> the names in it that build or load one.
MADE_BY_CONTEXT = {
    "claude_cage.metadata": {"SessionStore"},
    "claude_cage.engine.client": {"Engine"},
    "claude_cage.engine.fleet": {"engine_named", "for_session"},
    "claude_cage.config": {"load"},
}


def makes_its_own(path: Path) -> list[str]:
    """The calls in `path` that build a SessionStore or an Engine, or load the
    configuration, however the module or the name was imported ("file:line: call")."""
    tree = ast.parse(path.read_text())
    modules: dict[str, str] = {}  # local name -> one of MADE_BY_CONTEXT's modules
    names: set[str] = set()  # local names of the makers themselves
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MADE_BY_CONTEXT and alias.asname:
                    modules[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MADE_BY_CONTEXT:
                    modules[alias.asname or alias.name] = full
                elif alias.name in MADE_BY_CONTEXT.get(node.module, set()):
                    names.add(alias.asname or alias.name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        made = isinstance(func, ast.Name) and func.id in names
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            module = modules.get(func.value.id)
            made = module is not None and func.attr in MADE_BY_CONTEXT[module]
        if made:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(func)}(...)")
    return found


def test_operations_and_commands_take_their_store_config_and_engines_from_the_context() -> None:
    # One Context per command (context.py) holds them, so every part of a command
    # shares one store, one configuration and one engine per endpoint, and a test
    # hands an operation its fakes instead of patching module globals.
    checked = [p for p in MODULES.values() if p.parent.name in ("operations", "cli")]
    assert len(checked) > 30
    found = [line for path in sorted(checked) for line in makes_its_own(path)]
    assert found == [], "\n".join(found)


def test_the_context_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from claude_cage import metadata\n"
        "from claude_cage import config as config_mod\n"
        "from claude_cage.engine import fleet\n"
        "from claude_cage.engine.client import Engine as E\n"
        "def op(ctx):\n"
        "    store = metadata.SessionStore()\n"
        "    cfg = config_mod.load()\n"
        "    engine = fleet.for_session('web') or E()\n"
        "    return ctx.store, ctx.config, ctx.engine_for('web'), metadata.now_iso()\n"
    )
    found = [line.split(": ", 1)[1] for line in makes_its_own(sample)]
    assert found == [
        "metadata.SessionStore(...)",
        "config_mod.load(...)",
        "fleet.for_session(...)",
        "E(...)",
    ]


def test_the_audit_imports_nothing_from_the_operations() -> None:
    # audit.py sits below the operations (they drain and read it): it is handed the
    # event log and the engine, and never reaches up for them.
    assert {
        m for m in imports("claude_cage.audit") if m.startswith("claude_cage.operations")
    } == set()


# The process's environment, read in place of Context.environ.
ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def reads_the_environment(path: Path) -> list[str]:
    """Where `path` reads or changes the process's environment itself (os.environ,
    os.getenv, ...), however os or the name was imported ("file:line: name")."""
    tree = ast.parse(path.read_text())
    modules = {"os"}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "os" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            names |= {a.asname or a.name for a in node.names if a.name in ENVIRONMENT}
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr in ENVIRONMENT
        ) or (isinstance(node, ast.Name) and node.id in names):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_operations_read_the_environment_from_the_context() -> None:
    # The environment is read once, by the Context (ctx.environ): an operation that read
    # os.environ would see what the command's own children were given, and a test
    # would have to change the process's environment to give it another one.
    checked = [p for p in MODULES.values() if p.parent.name == "operations"]
    assert len(checked) > 30
    found = [line for path in sorted(checked) for line in reads_the_environment(path)]
    assert found == [], "\n".join(found)


def test_the_environment_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "import os as system\n"
        "from os import getenv as ask\n"
        "def op(ctx):\n"
        "    key = os.environ.get('ANTHROPIC_API_KEY') or system.getenv('X') or ask('Y')\n"
        "    os.environ.pop('Z', None)\n"
        "    return key, ctx.environ.get('X'), os.getpid()\n"
    )
    found = [line.split(": ", 1)[1] for line in reads_the_environment(sample)]
    assert sorted(found) == ["ask", "os.environ", "os.environ", "system.getenv"]


# A start's request is what the user asked for, frozen once built; what the start
# decides for it is a value of its own (policy.Decisions), which plan() takes beside it.
START_VALUES = (policy.SessionRequest, policy.Decisions)


def mutable_fields(cls: type) -> list[str]:
    """The fields of a dataclass whose type can be changed in place."""
    return [
        f"{f.name}: {f.type}"
        for f in dataclasses.fields(cls)
        if re.match(r"(list|dict|set|bytearray)\b", str(f.type))
    ]


@pytest.mark.parametrize("cls", START_VALUES)
def test_the_start_request_and_its_decisions_are_frozen(cls: type) -> None:
    value = cls(name="web") if "name" in {f.name for f in dataclasses.fields(cls)} else cls()
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, getattr(value, first))
    assert mutable_fields(cls) == []


def test_the_frozen_check_can_fail() -> None:
    @dataclasses.dataclass
    class Loose:
        name: str = ""
        ports: list[int] = dataclasses.field(default_factory=list)
        env: dict[str, str] = dataclasses.field(default_factory=dict)

    assert mutable_fields(Loose) == ["ports: list[int]", "env: dict[str, str]"]
    with pytest.raises(pytest.fail.Exception, match="FrozenInstanceError"):
        test_the_start_request_and_its_decisions_are_frozen(Loose)
