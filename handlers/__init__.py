"""The Slack glue: one module per surface, each with register(app)."""

from __future__ import annotations

from slack_bolt import App


def register_all(app: App) -> None:
    from handlers import actions, commands, errors, events, home, invoices, jobs, verification, views

    # jobs records a click or a command that changes something (refusing a replayed one) and acknowledges
    # it; verification refuses any other replayed request before events records its delivery or a
    # listener runs.
    for surface in (errors, jobs, verification, events, commands, actions, invoices, views, home):
        surface.register(app)
