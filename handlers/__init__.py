"""The Slack glue: one module per surface, each with register(app)."""

from __future__ import annotations

from slack_bolt import App


def register_all(app: App) -> None:
    from handlers import actions, commands, errors, events, home, invoices, verification, views

    # verification refuses a replayed request before events records its delivery or a listener runs.
    for surface in (errors, verification, events, commands, actions, invoices, views, home):
        surface.register(app)
