"""The shape issue 18 asks of the code: one real-time subpackage of small classes, a thin
websocket adapter, the documented import paths, and no import cycle in the package."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import django_stripe_bridge
from django_stripe_bridge.realtime.websocket import StripeEventConsumer

PACKAGE = Path(django_stripe_bridge.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, at any depth of its code (imports for
    type checkers only excepted)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _runtime_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _graph() -> dict[str, set[str]]:
    paths = {
        _module_name(p): p
        for p in PACKAGE.rglob("*.py")
        if "migrations" not in p.parts and "testing" not in p.parts
    }
    return {
        name: {m for m in _imports(path) if m in paths and m != name}
        for name, path in paths.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_package_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_the_websocket_consumer_is_a_thin_adapter():
    lines, _ = inspect.getsourcelines(StripeEventConsumer)
    assert len(lines) <= 200


def test_no_class_of_the_real_time_code_is_over_250_lines():
    for path in (PACKAGE / "realtime").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                assert size <= 250, f"{path.name}: {node.name} has {size} lines"


def test_the_documented_import_paths_still_work():
    from django_stripe_bridge.asgi import with_stripe_webhook
    from django_stripe_bridge.consumers import StripeEventConsumer as Consumer
    from django_stripe_bridge.layers import redis_channel_layer
    from django_stripe_bridge.policy import open_policy
    from django_stripe_bridge.routing import websocket_urlpatterns

    assert Consumer is StripeEventConsumer
    assert callable(with_stripe_webhook) and callable(redis_channel_layer)
    assert callable(open_policy) and websocket_urlpatterns
