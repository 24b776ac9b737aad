"""The layout the docs' Architecture page describes, checked on the source itself.

A new reader traces a push frame → codec → core → storage → fan-out; these
checks keep that path one-way: no module imports one that imports it back,
the generations' codecs and transports never reach the database, and the
core and storage never know a frame.
"""

import ast
from pathlib import Path

import syncapp

PACKAGE = Path(syncapp.__file__).parent

TRANSPORTS = ("syncapp.v03", "syncapp.v04", "syncapp.server.websocket", "syncapp.consumers")
DATABASE = ("django.db", "syncapp.storage")
FRAMES = ("syncapp.v03", "syncapp.v04", "syncapp.server.websocket", "syncapp.consumers", "channels")


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {
        module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.parts and "templates" not in path.parts
    }


def imports_of(name, path, known):
    """Every module ``name`` imports, at module level or inside functions, resolved to full names.

    Imports under ``if TYPE_CHECKING:`` are left out: only a type checker runs them, never Python, so they
    name a type in an annotation and make no dependency at run time.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    for_type_checkers = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in for_type_checkers:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            # ``from . import storage`` imports the module syncapp.storage; ``from . import tables`` inside
            # syncapp.storage depends on that module only, not on the package it is part of.
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known.keys()
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
    return found


def import_graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def within(name, prefixes):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_no_module_of_syncapp_imports_one_that_imports_it_back():
    graph = import_graph()
    internal = {name: {target for target in targets if target in graph} for name, targets in graph.items()}
    cycles = []
    state = {}

    def visit(name, path):
        state[name] = "open"
        for target in sorted(internal[name]):
            if state.get(target) == "open":
                cycles.append(" → ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(internal):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_generations_codecs_and_transports_never_reach_the_database():
    graph = import_graph()
    offenders = {
        name: sorted(target for target in targets if within(target, DATABASE))
        for name, targets in graph.items()
        if within(name, TRANSPORTS)
    }
    assert {name: targets for name, targets in offenders.items() if targets} == {}


def test_the_core_and_storage_know_no_frame_and_no_socket():
    graph = import_graph()
    storage = [name for name in graph if within(name, ("syncapp.storage",))]
    for name in ("syncapp.core", "syncapp.protocol.wire", *storage):
        assert not [target for target in graph[name] if within(target, (*FRAMES, "syncapp.server"))], name


def test_a_push_of_either_generation_reaches_storage_through_the_core():
    graph = import_graph()
    assert "syncapp.core" in graph["syncapp.v03.consumer"]
    assert "syncapp.core" in graph["syncapp.v04.calls"]
    assert "syncapp.v04.calls" in graph["syncapp.v04.ws"] and "syncapp.v04.calls" in graph["syncapp.v04.http"]
    committers = sorted(name for name in graph if "eventlog" in {t.rpartition(".")[2] for t in graph[name]})
    # Only the core commits pushes; the others use eventlog for resets and connection notes.
    source = {name: modules()[name].read_text() for name in committers}
    assert [name for name, text in source.items() if "eventlog.commit(" in text] == ["syncapp.core"]


# A module past this many lines does more than one job; split it by job (the storage package shows how).
MODULE_LINES = 500
# Besides the public modules, the top level holds the modules Django finds by their names, and the metric
# families every package records into (their names are the documented interface, not the module).
TOP_LEVEL_BY_CONVENTION = {"syncapp.apps", "syncapp.models", "syncapp.checks", "syncapp.metrics"}


def test_no_module_of_syncapp_does_more_than_a_module_can_say():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: lines for name, lines in lengths.items() if lines > MODULE_LINES} == {}


def test_the_top_level_holds_the_public_modules_and_what_django_looks_for():
    top_level = {name for name, path in modules().items() if path.parent == PACKAGE and path.name != "__init__.py"}
    assert sorted(top_level - syncapp.PUBLIC_API.keys() - TOP_LEVEL_BY_CONVENTION) == []
