"""The one error handler, when a request fails before the app's own middleware has run."""

from __future__ import annotations

import logging

from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from handlers import errors
from sandbox.app_requests import slash_command_body
from sandbox.slack import FORM, TOKEN
from tests.slack_helpers import texts


def test_a_failure_before_the_app_knows_its_services_is_still_told_and_logged_once(fake, caplog):
    app = App(
        client=WebClient(token=TOKEN, base_url=fake.url),
        token_verification_enabled=False,
        request_verification_enabled=False,
    )
    errors.register(app)

    @app.middleware
    def broken(next):  # fails as a middleware that runs before the app's own would
        raise RuntimeError("broken middleware")

    body = slash_command_body("help", "UCAROL01", response_url=fake.response_url("carol"))
    response = app.dispatch(BoltRequest(body=body, headers={"content-type": FORM}))

    assert response.status == 500
    [answer] = fake.wait_for("response_url")
    assert texts(answer).startswith(":x: Something went wrong on our side (error `")
    [logged] = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert logged.getMessage().startswith("unexpected error ") and logged.getMessage()[-8:] in texts(answer)
