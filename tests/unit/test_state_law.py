"""The state machine and the route table each have one writer: checked over the source, statically.

A space's stage is assigned only in `spacehub.transitions` (which consults the transition table), and routes are
written only in `spacehub.routetable` (derived from the space's row). Any other assignment of `.stage`, SQL update of
the stage column, `Space(stage=...)`, or route write fails this test, naming the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "platform" / "spacehub", REPO / "runner" / "spacehub_runner"]
STAGE_WRITER = REPO / "platform" / "spacehub" / "transitions.py"
ROUTE_WRITER = REPO / "platform" / "spacehub" / "routetable.py"
ROUTE_RECEIVERS = {"routes", "route_table", "RedisRouteTable"}


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        found: list[ast.expr] = []
        for target in node.targets:
            found.extend(target.elts if isinstance(target, ast.Tuple | ast.List) else [target])
        return found
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    return []


def _receiver_name(expr: ast.expr) -> str:
    """The last name in `a.b.c` or `Name(...)` (a call's function), for telling what a method is called on."""
    while isinstance(expr, ast.Call):
        expr = expr.func
    if isinstance(expr, ast.Attribute):
        return expr.attr
    if isinstance(expr, ast.Name):
        return expr.id
    return ""


def stage_writes(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        for target in _targets(node):
            if isinstance(target, ast.Attribute) and target.attr == "stage":
                found.append((node.lineno, "assignment to .stage"))
        if isinstance(node, ast.Call):
            func = node.func
            name = _receiver_name(func)
            keywords = {k.arg for k in node.keywords}
            if isinstance(func, ast.Attribute) and func.attr == "values":
                dict_keys = {k.value for arg in node.args if isinstance(arg, ast.Dict)
                             for k in arg.keys if isinstance(k, ast.Constant)}
                if "stage" in keywords or "stage" in dict_keys:
                    found.append((node.lineno, "SQL update of the stage column"))
            if name == "Space" and "stage" in keywords:
                found.append((node.lineno, "Space(stage=...)"))
            if name == "setattr" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value == "stage":
                found.append((node.lineno, "setattr(..., 'stage', ...)"))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = " ".join(node.value.lower().split())
            if "update spaces" in text and "stage" in text:
                found.append((node.lineno, "raw SQL update of the stage column"))
    return found


def route_writes(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method, receiver = node.func.attr, node.func.value
        if method in ("set", "delete") and _receiver_name(receiver) in ROUTE_RECEIVERS:
            found.append((node.lineno, f"route {method}"))
        if method in ("hset", "hdel", "delete") and any(
                isinstance(arg, ast.Name) and arg.id == "ROUTES_KEY" for arg in node.args):
            found.append((node.lineno, f"{method} of the route hash"))
    return found


def _violations(check, allowed: Path) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            if path == allowed:
                continue
            for line, what in check(ast.parse(path.read_text(), str(path))):
                out.append(f"{path.relative_to(REPO)}:{line}: {what}")
    return out


def test_only_the_transition_function_assigns_a_stage():
    assert _violations(stage_writes, STAGE_WRITER) == []


def test_only_the_route_writer_writes_routes():
    assert _violations(route_writes, ROUTE_WRITER) == []


def test_the_checks_catch_each_kind_of_write():
    # The checks themselves must be able to fail: each form of write, once, in a snippet.
    snippet = ast.parse(
        "space.stage = Stage.RUNNING\n"
        "space.stage, space.message = Stage.RUNNING, ''\n"
        "session.execute(update(Space).values(stage=Stage.SLEEPING))\n"
        "session.execute(update(Space).values({'stage': 'RUNNING'}))\n"
        "Space(owner='a', stage=Stage.RUNNING)\n"
        "setattr(space, 'stage', 'RUNNING')\n"
        "conn.execute(text('UPDATE spaces SET stage = :s'))\n")
    assert sorted(line for line, _ in stage_writes(snippet)) == [1, 2, 3, 4, 5, 6, 7]
    routes = ast.parse(
        "self.routes.set(label, target)\n"
        "RedisRouteTable(conn).delete(label)\n"
        "conn.hset(ROUTES_KEY, label, target)\n"
        "conn.hdel(ROUTES_KEY, label)\n"
        "space.message = 'x'\n")
    assert sorted(line for line, _ in route_writes(routes)) == [1, 2, 3, 4]
