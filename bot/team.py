"""The linked people, by role: whom bill messages @-mention and whose App Homes a change refreshes."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Role, User

ROLES = (Role.FINANCE, Role.CUSTOMER_SUCCESS, Role.SALES)


def load_team(session: Session) -> dict[Role, list[User]]:
    """The linked people by role, each role by name."""
    team: dict[Role, list[User]] = defaultdict(list)
    for user in session.scalars(select(User).where(User.slack_user_id.is_not(None)).order_by(User.name)):
        team[user.role].append(user)
    return team


def linked(team) -> list[str]:
    """Every linked person's Slack user: Finance, then Customer Success, then Sales."""
    return [user.slack_user_id for role in ROLES for user in team.get(role, ()) if user.slack_user_id]
