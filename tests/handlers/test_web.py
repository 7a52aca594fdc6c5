"""The HTTP surface itself: health checks and requests that are not Slack's."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from sqlalchemy import func, select

from db.models import BillAction


def test_health_check_answers_when_the_database_is_reachable(slack):
    with urllib.request.urlopen(f"{slack.base_url}/healthz", timeout=5) as answer:
        assert answer.status == 200
        assert json.loads(answer.read()) == {
            "ok": True,
            "database": "reachable",
            "outbox": {"pending": 0, "failed": 0, "oldest_pending_seconds": 0.0},
        }


def test_a_signed_payload_that_is_not_json_is_a_bad_request(slack):
    answer = slack.sender.post("payload=%7Bnot+json")
    assert answer.status == 400 and answer.json() == {"ok": False, "error": "the payload is not valid JSON"}
    with slack.db() as session:
        assert session.scalar(select(func.count()).select_from(BillAction)) == 0
    assert slack.fake.methods_called() == ["auth.test"]  # only the app's start-up check reached Slack


def test_an_unknown_path_is_not_found(slack):
    try:
        urllib.request.urlopen(f"{slack.base_url}/admin", timeout=5)
    except urllib.error.HTTPError as refusal:
        assert refusal.code == 404
    else:
        raise AssertionError("expected 404")
