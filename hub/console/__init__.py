"""The web console: server-rendered pages for each tenant's front desk and the hub's operators.

`add_console(app, hub)` mounts it on the hub's app; see docs/console.md.
"""

from __future__ import annotations

from hub.console.web import Console, add_console

__all__ = ["Console", "add_console"]
