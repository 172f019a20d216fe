"""One owner per state machine: only hub/outbox.py changes a notification's status.

A static scan of every module under hub/ and plugins/ finds writes of
`status` or `status_history` against the notifications table (ORM
attributes, Core `.values(...)`, executemany parameters, `setattr`, raw
SQL) and comparisons of `Notification.status` with string literals instead
of `NotificationStatus`. The scanner is tested on its own first, so the
meta-test can fail.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hub.outbox import FINAL_STATUSES, STATUSES, NotificationStatus

ROOT = Path(__file__).resolve().parent.parent
OWNER = ROOT / "hub" / "outbox.py"
STATUS_FIELDS = frozenset({"status", "status_history"})
_RAW_UPDATE = re.compile(r"\bupdate\s+notifications\b[^;]*\bset\b[^;]*\bstatus", re.IGNORECASE | re.DOTALL)


class StatusScan(ast.NodeVisitor):
    """Finds status writes and literal comparisons against notifications in one module.

    A name "holds notifications" when it is bound from an expression that mentions the
    `Notification` model (or another such name): `session.get(Notification, ...)`,
    `Notification.__table__`, a loop over `select(Notification)` results, a parameter
    annotated `Notification`. Rough, but it errs towards reporting.
    """

    def __init__(self, returning: set[str] | None = None) -> None:
        self.held: set[str] = set()
        self.returning = returning or set()
        """Functions of the module annotated to return notifications: their results hold them too."""
        self.dicts: dict[str, set[str]] = {}
        self.found: list[tuple[int, str]] = []

    # --- what refers to notifications ----------------------------------------------------------

    def mentions(self, node: ast.AST | None) -> bool:
        if node is None:
            return False
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and (sub.id == "Notification" or sub.id in self.held):
                return True
            if isinstance(sub, ast.Attribute) and (sub.attr == "Notification" or sub.attr in self.returning):
                return True
            if isinstance(sub, ast.Name) and sub.id in self.returning:
                return True
            if isinstance(sub, ast.Constant) and sub.value == "notifications":
                return True
        return False

    def hold(self, target: ast.AST) -> None:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Name):
                self.held.add(sub.id)

    def keys(self, node: ast.AST) -> set[str]:
        """Status keys written by a dict literal, a list of them, or a name bound to one."""
        found: set[str] = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Dict):
                found |= {k.value for k in sub.keys if isinstance(k, ast.Constant) and k.value in STATUS_FIELDS}
            elif isinstance(sub, ast.Name):
                found |= self.dicts.get(sub.id, set())
        return found

    def report(self, node: ast.AST, what: str) -> None:
        self.found.append((getattr(node, "lineno", 0), what))

    # --- bindings ------------------------------------------------------------------------------

    def _bind(self, targets: list[ast.expr], value: ast.AST | None) -> None:
        if value is not None and self.mentions(value):
            for target in targets:
                if isinstance(target, (ast.Name, ast.Tuple, ast.List)):
                    self.hold(target)
        if isinstance(value, ast.Dict):
            written = self.keys(value)
            for target in targets:
                if isinstance(target, ast.Name) and written:
                    self.dicts[target.id] = written
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in STATUS_FIELDS and self.mentions(target.value):
                self.report(target, f"assigns {ast.unparse(target)}")

    def visit_Assign(self, node: ast.Assign) -> None:
        self._bind(list(node.targets), node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._bind([node.target], node.value if node.value is not None else node.annotation)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._bind([node.target], node.value)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._bind([node.target], node.value)
        self.generic_visit(node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self._bind([node.target], node.iter)
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self._bind([node.target], node.iter)
        self.generic_visit(node)

    def visit_withitem(self, node: ast.withitem) -> None:
        if node.optional_vars is not None:
            self._bind([node.optional_vars], node.context_expr)
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        if self.mentions(node.annotation):
            self.held.add(node.arg)
        self.generic_visit(node)

    # --- writes and literal comparisons --------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and name.value in STATUS_FIELDS and self.mentions(node.args[0]):
                self.report(node, f"setattr(..., {name.value!r})")
        if isinstance(func, ast.Attribute) and func.attr == "values" and self.mentions(func.value):
            written = {k.arg for k in node.keywords if k.arg in STATUS_FIELDS}
            for k in node.keywords:
                if k.arg is None:
                    written |= self.keys(k.value)
            for arg in node.args:
                written |= self.keys(arg)
            if written:
                self.report(node, f".values() writes {', '.join(sorted(written))} of notifications")
        if isinstance(func, ast.Attribute) and func.attr == "execute" and node.args and self.mentions(node.args[0]):
            written = set().union(*(self.keys(arg) for arg in node.args[1:])) if len(node.args) > 1 else set()
            if written:
                self.report(node, f"execute() parameters write {', '.join(sorted(written))} of notifications")
        if isinstance(func, ast.Attribute) and func.attr == "in_" and self._is_status(func.value) and self._literals(node.args):
            self.report(node, "compares Notification.status with string literals")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        sides = [node.left, *node.comparators]
        if any(self._is_status(side) for side in sides) and self._literals(sides):
            self.report(node, "compares Notification.status with a string literal")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _RAW_UPDATE.search(node.value):
            self.report(node, "raw SQL updates notifications.status")

    def _is_status(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "status" and self.mentions(node.value)

    @staticmethod
    def _literals(nodes: list[ast.expr]) -> bool:
        for node in nodes:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return True
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
            ):
                return True
        return False


def scan(source: str) -> list[tuple[int, str]]:
    """Every status write or literal comparison against notifications in `source`."""
    tree = ast.parse(source)
    returning = {
        node.name for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None
        and "Notification" in ast.unparse(node.returns)
    }
    scanner = StatusScan(returning)
    scanner.visit(tree)
    return scanner.found


FLAGGED = [
    ("ORM attribute", "notification = await session.get(Notification, 1)\nnotification.status = 'sent'"),
    ("history too", "n = await session.get(Notification, 1)\nn.status_history = [*n.status_history, {}]"),
    ("loop over a select", "for n in (await session.scalars(select(Notification))).all():\n    n.status = 'canceled'"),
    ("dict of rows", "rows = {n.key: n for n in await s.scalars(select(Notification))}\ncurrent = rows.get('k')\ncurrent.status = 'pending'"),
    ("annotated parameter", "def f(row: Notification) -> None:\n    row.status = 'failed'"),
    ("enum values count too", "def f(row: Notification) -> None:\n    row.status = NotificationStatus.FAILED"),
    ("setattr", "row = await s.get(Notification, 1)\nsetattr(row, 'status', 'sent')"),
    ("Core table update", "table = Notification.__table__\nawait c.execute(table.update().values(status='sent'))"),
    ("ORM update()", "await s.execute(update(Notification).where(Notification.id == 1).values(status_history=[]))"),
    ("dict splat", "values = {'status': 'pending'}\nawait s.execute(insert(Notification).values(**values))"),
    ("executemany parameters", "await s.execute(update(Notification), [{'id': 1, 'status': 'sent'}])"),
    ("raw SQL", "await s.execute(text(\"UPDATE notifications SET status = 'sent' WHERE id = 1\"))"),
    ("literal comparison", "q = select(Notification).where(Notification.status == 'pending')"),
    ("a helper's result", "async def load() -> Notification: ...\nrow = await load()\nif row.status == 'sandboxed': pass"),
    ("literal in_", "q = select(Notification).where(Notification.status.in_(('pending', 'sending')))"),
]

NOT_FLAGGED = [
    ("a message's status", "message = await session.scalar(select(Message))\nmessage.status = 'read'"),
    ("an appointment's status", "row = Appointment(status='scheduled')\nrow.status = 'canceled'"),
    ("other notification columns", "await s.execute(update(Notification).values(contact_id=2))"),
    ("messages table insert", "await c.execute(Message.__table__.insert(), [{'status': 'sent'}])"),
    ("enum comparison", "q = select(Notification).where(Notification.status == NotificationStatus.PENDING)"),
    ("reading status", "row = await s.get(Notification, 1)\nprint(row.status, row.status_history)"),
]


@pytest.mark.parametrize(("case", "source"), FLAGGED, ids=[case for case, _ in FLAGGED])
def test_scanner_reports(case: str, source: str) -> None:
    assert scan(source), case


@pytest.mark.parametrize(("case", "source"), NOT_FLAGGED, ids=[case for case, _ in NOT_FLAGGED])
def test_scanner_leaves_alone(case: str, source: str) -> None:
    assert scan(source) == [], case


def modules() -> list[Path]:
    return sorted([*(ROOT / "hub").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")])


def test_only_the_outbox_changes_notification_status() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in modules()
        if path != OWNER
        for line, what in scan(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "change a notification's status through hub/outbox.py:\n" + "\n".join(offenders)


def test_the_outbox_is_where_status_is_written() -> None:
    # Keeps the test above honest: the scanner does see the outbox's own writes.
    writes = [what for _, what in scan(OWNER.read_text(encoding="utf-8")) if "literal" not in what]
    assert len(writes) >= 4


def test_status_values_are_unchanged() -> None:
    # Stored rows and API answers carry these strings: renaming one is a migration, not a refactor.
    assert {s.value for s in NotificationStatus} == {
        "pending", "sending", "sent", "sandboxed", "delivered", "read", "failed", "expired", "canceled",
    }
    assert set(STATUSES) == {s.value for s in NotificationStatus}
    assert NotificationStatus.PENDING not in FINAL_STATUSES and NotificationStatus.SENDING not in FINAL_STATUSES
