"""The API's OpenAPI document, tested against the API itself: every operation, with generated input and
a valid or an invalid bearer token, answers without a server error and as its document says."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from sqlalchemy.orm import sessionmaker

from bot.settings import load_settings
from handlers.api import DOCUMENT_PATH, create_api
from tests.handlers.api_support import OPERATOR_TOKEN


class CurrentApi:
    """The WSGI application of the test running now: schemathesis loads the document once, from an API on
    no database, and each test (each backend) calls an API on its own test database."""

    def __init__(self):
        self.without_database = create_api(load_settings(_env_file=None), sessionmaker())
        self.app = self.without_database

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


current = CurrentApi()
# Every check but "schema-valid input is accepted": the document cannot say every rule (that a month has
# ended, that a password fits bcrypt's 72 bytes, that a customer's name is free), and such input gets 422.
CHECKS = schemathesis.Config.from_dict({"checks": {"positive_data_acceptance": {"enabled": False}}})
schema = schemathesis.openapi.from_wsgi(DOCUMENT_PATH, current, config=CHECKS)


@pytest.fixture
def tokens(api) -> list[str]:
    """The demo data, and three bearer tokens: a Finance person's login, the operators' token, and neither."""
    api.seed()
    current.app = api.app
    yield [api.login("fiona"), OPERATOR_TOKEN, "not-a-token"]
    current.app = current.without_database


@schema.parametrize()
# The same examples on every run (found stable at 200 an operation), so that a run's outcome is the code's.
@hypothesis.settings(max_examples=25, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_answers_as_documented(case, tokens):
    for token in tokens:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})


def test_the_document_covers_every_route(api):
    document = api.client.get(DOCUMENT_PATH).json
    routes = {
        (rule.rule.replace("<", "{").replace(">", "}"), method.lower())
        for rule in api.app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and rule.rule != DOCUMENT_PATH
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == documented
