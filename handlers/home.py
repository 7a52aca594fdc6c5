"""The App Home tab: published for whoever opens it, according to their role."""

from __future__ import annotations

from bot.home import home_view
from handlers.identity import current_user


def register(app) -> None:
    @app.event("app_home_opened")
    def publish_home(event, client, context):
        if event.get("tab") != "home":
            return
        services = context["services"]
        slack_user_id = event["user"]
        user = current_user(services, client, slack_user_id)
        today = services.settings.today()
        with services.sessions() as session:
            view = home_view(session=session, user=user, today=today)
        client.views_publish(user_id=slack_user_id, view=view)
