"""The import graph of portal/: no module imports itself through others, the workflow's parts point one way,
and infrastructure (portal/infra/) imports no feature.

The graph is read from the source with ``ast``; nothing is imported. Every ``import`` and ``from ... import`` of
a portal module is an edge, at module level or inside a function, except under ``if TYPE_CHECKING:``.
``from package import name`` is an edge to ``package.name`` when that is a module, else to ``package``.
Importing a submodule also runs its package's ``__init__``; that implied edge is not counted, or every package
whose ``__init__`` imports its own submodules (``portal.workflow.engine``) would be a circle of its own.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "portal"

# Circles outside the workflow that exist today, each listed by the edge that closes it; the test ignores these
# edges and fails when one is gone (remove it here then) or when a new circle appears.
KNOWN_CYCLE_EDGES = {
    # portal/api/__init__.py defines the blueprint and the helpers every API module imports, then imports the
    # modules at its end so their routes register on it. Moving bp and the helpers into a module of their own
    # breaks the circle.
    ("portal.api", "portal.api.batches"),
    ("portal.api", "portal.api.excel"),
    ("portal.api", "portal.api.openapi"),
    ("portal.api", "portal.api.workflow"),
}

# (part, parts it must never reach, directly or through other modules).
WORKFLOW = "portal.workflow"
LAYERS = [
    # Loading reads a file into what the portal stores; the engine runs what was stored, and JSON definitions
    # are drawn as BPMN for the loader to read.
    (f"{WORKFLOW}.loading", [f"{WORKFLOW}.engine", f"{WORKFLOW}.json_definitions", f"{WORKFLOW}.process_files",
                             f"{WORKFLOW}.store"]),
    (f"{WORKFLOW}.json_definitions", [f"{WORKFLOW}.engine", f"{WORKFLOW}.process_files", f"{WORKFLOW}.store"]),
    # Shared by loading and the engine, so they import neither.
    (f"{WORKFLOW}.expressions", [f"{WORKFLOW}.loading", f"{WORKFLOW}.engine", f"{WORKFLOW}.json_definitions"]),
    (f"{WORKFLOW}.fields", [f"{WORKFLOW}.loading", f"{WORKFLOW}.engine", f"{WORKFLOW}.json_definitions"]),
]

# Infrastructure (portal/infra/) stands below every feature: it imports none of these, directly or through
# other modules.
INFRA = "portal.infra"
FEATURES = ["portal.accounts", "portal.api", "portal.batches", "portal.excel", "portal.jobs", "portal.notices",
            "portal.web", "portal.workflow"]
# The imports from infra into a feature that exist today; the test ignores these edges and fails when one is gone.
KNOWN_INFRA_EXCEPTIONS = {
    # The scheduler's heartbeat gauge reads the key the scheduler writes; moving ``last_beat`` and ``BEAT_KEY``
    # into portal.infra.queueing would end it.
    ("portal.infra.metrics", "portal.jobs.scheduler"),
    # The user loader asks accounts for the login session and the API token; it belongs with accounts.
    ("portal.infra.auth_loader", "portal.accounts"),
    # Workbook responses and the upload limit's error; the module belongs with the imports feature.
    ("portal.infra.http_files", "portal.excel"),
}

# --- the graph ----------------------------------------------------------------------------------------------

def modules(root, package):
    """{module name: (path, is a package)} of every .py file under root/package."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """The modules one file imports, as (target, line), with relative imports resolved."""

    def __init__(self, known, package):
        self.known, self.package, self.found = known, package, []

    def target(self, name):
        while name and name not in self.known:
            name = name.rpartition(".")[0]
        return name or None

    def visit_If(self, node):
        if _type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            self.add(self.target(alias.name), node.lineno)

    def visit_ImportFrom(self, node):
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[:len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        for alias in node.names:
            name = f"{base}.{alias.name}"
            self.add(name if name in self.known else self.target(base), node.lineno)

    def add(self, target, line):
        if target is not None:
            self.found.append((target, line))


def import_graph(root=ROOT, package=PACKAGE):
    """{module: {imported module: (path, line of the first such import)}} among the modules of ``package``."""
    known = modules(root, package)
    graph = {}
    for name, (path, is_package) in known.items():
        visitor = _Imports(known, name if is_package else name.rpartition(".")[0])
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges = {}
        for target, line in visitor.found:
            if target != name:
                edges.setdefault(target, (path.relative_to(root), line))
        graph[name] = edges
    return graph


def cycles(graph):
    """One circle (a list of modules, the first repeated at the end) per strongly connected set of modules."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(start):
        # Tarjan's algorithm, iterative: a deep chain of imports never meets Python's recursion limit.
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.add(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.append(_circle(graph, members))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _circle(graph, members):
    """A shortest circle through the first of ``members`` that stays among them."""
    start = min(members)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for child in sorted(graph.get(path[-1], {})):
            if child == start:
                return path + [start]
            if child in members and child not in seen:
                seen.add(child)
                paths.append(path + [child])
    raise AssertionError(f"no circle through {start}")  # a strongly connected set always has one


def describe(graph, circle):
    """The circle one import a line: ``a imports b (portal/a.py:12)``."""
    lines = []
    for source, target in zip(circle, circle[1:]):
        path, line = graph[source][target]
        lines.append(f"  {source} imports {target} ({path}:{line})")
    return "\n".join(lines)


def reach(graph, start):
    """{module reached from start: the chain of imports leading there}."""
    chains, todo = {start: [start]}, [start]
    while todo:
        node = todo.pop()
        for child in sorted(graph.get(node, {})):
            if child not in chains:
                chains[child] = chains[node] + [child]
                todo.append(child)
    return chains


def _within(module, part):
    return module == part or module.startswith(part + ".")


# --- portal/ --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def portal_graph():
    return import_graph()


def test_no_module_of_portal_imports_itself_through_others(portal_graph):
    graph = {name: dict(edges) for name, edges in portal_graph.items()}
    assert f"{WORKFLOW}.engine.actions" in graph and graph["portal.api"], "the graph reads portal/"
    for source, target in KNOWN_CYCLE_EDGES:
        graph[source].pop(target, None)
    found = cycles(graph)
    assert not found, "import circles in portal/:\n" + "\n\n".join(describe(graph, c) for c in found)


def test_each_known_exception_is_still_an_import(portal_graph):
    graph = portal_graph
    gone = sorted(edge for edge in KNOWN_CYCLE_EDGES if edge[1] not in graph.get(edge[0], {}))
    assert not gone, f"no longer imported, remove from KNOWN_CYCLE_EDGES: {gone}"
    still_circles = {edge for edge in KNOWN_CYCLE_EDGES if edge[0] in reach(graph, edge[1])}
    assert still_circles == KNOWN_CYCLE_EDGES, (
        f"no longer closing a circle, remove from KNOWN_CYCLE_EDGES: {sorted(KNOWN_CYCLE_EDGES - still_circles)}")


def test_the_workflow_loader_never_reaches_the_engine_and_each_part_points_one_way(portal_graph):
    graph = portal_graph
    crossings = {}  # (the import that enters a forbidden part): the shortest chain from the part to it
    for part, forbidden in LAYERS:
        members = [name for name in graph if _within(name, part)]
        assert members, f"no module in {part}"
        for name in members:
            for reached, chain in reach(graph, name).items():
                entered = len(chain) > 1 and any(_within(reached, other) for other in forbidden)
                if entered and not any(_within(chain[-2], other) for other in forbidden):
                    edge = (chain[-2], reached)
                    if edge not in crossings or len(chain) < len(crossings[edge]):
                        crossings[edge] = chain
    problems = [f"{' -> '.join(chain)} ({':'.join(map(str, graph[edge[0]][edge[1]]))})"
                for edge, chain in sorted(crossings.items())]
    assert not problems, "imports against the workflow's layers:\n  " + "\n  ".join(problems)


def test_infrastructure_imports_no_feature(portal_graph):
    graph = {name: dict(edges) for name, edges in portal_graph.items()}
    members = [name for name in graph if _within(name, INFRA)]
    assert f"{INFRA}.queueing" in members and f"{INFRA}.extensions" in members, "the graph reads portal/infra/"
    gone = sorted(edge for edge in KNOWN_INFRA_EXCEPTIONS if edge[1] not in graph.get(edge[0], {}))
    assert not gone, f"no longer imported, remove from KNOWN_INFRA_EXCEPTIONS: {gone}"
    for source, target in KNOWN_INFRA_EXCEPTIONS:
        graph[source].pop(target)
    problems = []
    for name in members:
        for reached, chain in sorted(reach(graph, name).items()):
            if any(_within(reached, feature) for feature in FEATURES) and not any(
                    _within(step, feature) for step in chain[:-1] for feature in FEATURES):
                path, line = graph[chain[-2]][reached]
                problems.append(f"{' -> '.join(chain)} ({path}:{line})")
    assert not problems, "infrastructure reaching a feature:\n  " + "\n  ".join(problems)


# --- the reading itself, on a package made for the test -----------------------------------------------------

def _package(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return import_graph(tmp_path, "pkg")


def test_a_circle_through_a_function_level_import_is_found_and_named(tmp_path):
    graph = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg import b\n",
        "b.py": "def late():\n    from pkg.c import thing\n    return thing\n",
        "c.py": "import pkg.a\nthing = 1\n",
        "d.py": "from . import a\n",
    })
    found = cycles(graph)
    assert found == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert describe(graph, found[0]) == ("  pkg.a imports pkg.b (pkg/a.py:1)\n"
                                         "  pkg.b imports pkg.c (pkg/b.py:2)\n"
                                         "  pkg.c imports pkg.a (pkg/c.py:1)")
    assert "pkg.a" in graph["pkg.d"]  # a relative import is an edge too


def test_imports_under_type_checking_are_no_edges(tmp_path):
    graph = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "import pkg.b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nelse:\n    pass\n",
        "sub/__init__.py": "from pkg.sub import inner\n",
        "sub/inner.py": "from pkg.sub import helper\nfrom pkg import sub\n",
        "sub/helper.py": "",
    })
    assert cycles(graph) == [["pkg.sub", "pkg.sub.inner", "pkg.sub"]]
    assert set(graph["pkg.b"]) == set()
    assert set(graph["pkg.sub.inner"]) == {"pkg.sub.helper", "pkg.sub"}
