"""The JSON API as finance tools and scripts use it: log in, read, act on bills, manage accounts and customers.

Every refusal is a problem document (RFC 9457) with a specific message, and the workflow's rules and
words are the ones Slack shows.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot import bills as bill_service
from bot.money import format_totals
from bot.periods import Period
from db.models import Bill, BillStatus, Outbox, OutboxKind, User
from tests.handlers.api_support import OPERATOR_TOKEN, PASSWORD, PROBLEM


@pytest.fixture
def api(make_api):
    api = make_api()
    api.seed()
    return api


def problem(response, status: int) -> dict:
    """The problem document of a refusal, checked for what RFC 9457 asks."""
    assert response.status_code == status, response.json
    assert response.content_type == PROBLEM
    document = response.json
    assert document["status"] == status and document["title"] and document["detail"]
    return document


# --- sessions ----------------------------------------------------------------------------------------


def test_a_login_gives_a_bearer_token_that_reads_the_api(api):
    response = api.client.post("/api/session", json={"name": "carol", "password": PASSWORD})

    assert response.status_code == 201
    assert response.json["user"]["name"] == "carol" and response.json["user"]["role"] == "customer_success"
    me = api.call("GET", f"/api/users/{response.json['user']['id']}", response.json["token"])
    assert me.status_code == 200 and me.json["name"] == "carol"


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "send a bearer token (Authorization: Bearer TOKEN)"),
        ("Basic Y2Fyb2w6eA==", "the Authorization header must be `Bearer TOKEN`"),
        ("Bearer made-up", "the bearer token is not valid; log in with POST /api/session"),
    ],
)
def test_no_or_a_bad_token_is_401_saying_which(api, header, detail):
    response = api.client.get("/api/bills", headers={"Authorization": header} if header else {})

    assert problem(response, 401)["detail"].startswith(detail)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_password_is_401_and_the_sixth_try_429_with_retry_after(api):
    for _ in range(5):
        response = api.client.post("/api/session", json={"name": "carol", "password": "guess"})
        assert problem(response, 401)["detail"] == "wrong account name or password"

    locked = api.client.post("/api/session", json={"name": "carol", "password": PASSWORD})

    assert "too many failed logins" in problem(locked, 429)["detail"]
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60


def test_logging_out_ends_only_that_token(api):
    phone, laptop = api.login("sam"), api.login("sam")

    assert api.call("DELETE", "/api/session", phone).status_code == 204

    assert "this session ended" in problem(api.call("GET", "/api/bills", phone), 401)["detail"]
    assert api.call("GET", "/api/bills", laptop).status_code == 200


def test_no_token_or_password_reaches_the_log(api, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    token = api.login("fiona")
    api.client.post("/api/session", json={"name": "fiona", "password": "a wrong secret"})
    api.call("GET", "/api/bills", token)
    monkeypatch.setattr(bill_service, "get_bill", lambda **_: 1 / 0)  # an unexpected error, logged with its id
    failed = api.call("GET", "/api/bills/1", token)
    api.call("DELETE", "/api/session", token)

    assert "something went wrong on our side (error " in problem(failed, 500)["detail"]
    assert "unexpected error" in caplog.text
    for secret in (token, PASSWORD, "a wrong secret", OPERATOR_TOKEN):
        assert secret not in caplog.text


# --- reading -------------------------------------------------------------------------------------------


def test_customers_usage_and_bills_read_as_in_slack(api):
    token = api.login("sam")
    acme = api.customer_id("Acme Analytics")

    listed = api.call("GET", "/api/customers", token).json["items"]
    assert [customer["name"] for customer in listed][:2] == ["Acme Analytics", "Cyberdyne Cloud"]
    detail = api.call("GET", f"/api/customers/{acme}", token).json
    assert detail["csm"]["name"] == "carol" and detail["require_csm_approval"] is True
    assert detail["overage_unit_cost"] == "0.010000"
    last_month = Period.containing(api.settings.today()).shifted(-1)  # the 12 months ending last month
    assert [month["month"] for month in detail["usage"]] == [str(last_month.shifted(n)) for n in range(-11, 1)]
    assert {bill["month"] for bill in detail["bills"]} == {"2026-08", "2026-09"}
    usage = api.call("GET", f"/api/usage?customer_id={acme}&year=2026", token).json
    assert len(usage["months"]) == 12 and usage["months"][-1] == {
        "month": "2026-12", "api_usage": None, "limit": 1_000_000, "over_limit": False, "overage": 0}


def test_bills_filter_and_page(api):
    token = api.login("sam")
    drafts = api.call("GET", "/api/bills?status=DRAFT&month=2026-09&per_page=2", token).json

    assert drafts["total"] == 3 and drafts["page"] == 1 and len(drafts["items"]) == 2
    second = api.call("GET", "/api/bills?status=DRAFT&month=2026-09&per_page=2&page=2", token).json
    ids = [bill["id"] for bill in drafts["items"] + second["items"]]
    assert len(set(ids)) == 3 and all(bill["status"] == "DRAFT" for bill in second["items"])
    acme = api.customer_id("Acme Analytics")
    of_acme = api.call("GET", f"/api/bills?customer_id={acme}", token).json["items"]
    assert [bill["month"] for bill in of_acme] == ["2026-08", "2026-09"]

    refused = problem(api.call("GET", "/api/bills?month=September", token), 422)
    assert refused["errors"] == [{"field": "month", "detail": "must be a month written YYYY-MM, e.g. 2026-10"}]


def test_a_bill_shows_its_history_its_steps_and_what_the_caller_may_do(api):
    acme = api.bill_id("Acme Analytics", 9)  # two-step: carol approved, Sales next

    as_sam = api.call("GET", f"/api/bills/{acme}", api.login("sam")).json

    assert [action["action"] for action in as_sam["history"]] == ["DRAFT", "APPROVE"]
    assert as_sam["history"][1]["by"] == "carol" and as_sam["history"][1]["user"]["name"] == "carol"
    steps = as_sam["approval"]["steps"]
    assert [(step["who"], step["done"]) for step in steps] == [("carol (the customer's CSM)", True), ("Sales (after the customer's CSM)", False)]
    assert as_sam["approval"]["waiting_for"] == 2
    assert as_sam["you_can"] == ["approve", "reject"]
    assert api.call("GET", f"/api/bills/{acme}", api.login("casey")).json["you_can"] == []
    assert problem(api.call("GET", "/api/bills/999999", api.login("sam")), 404)["detail"] == "there is no bill #999999"


# --- acting on bills -----------------------------------------------------------------------------------


def test_approving_follows_the_slack_rules_and_words(api):
    acme = api.bill_id("Acme Analytics", 9)
    hooli = api.bill_id("Hooli Search", 9)  # one-step, its approval undone

    assert problem(api.call("PATCH", f"/api/bills/{acme}/approve", api.login("fiona")), 403)["detail"] == (
        f"Only Customer Success and Sales can approve bill #{acme}")
    casey = problem(api.call("PATCH", f"/api/bills/{acme}/approve", api.login("casey")), 409)
    assert casey["detail"] == f"Bill #{acme} was approved by carol for Customer Success; it is waiting for Sales now"
    carol = problem(api.call("PATCH", f"/api/bills/{acme}/approve", api.login("carol")), 409)
    assert carol["detail"].startswith(f"Bill #{acme} was already approved by carol at ")

    approved = api.call("PATCH", f"/api/bills/{hooli}/approve", api.login("sam"))
    assert approved.status_code == 200 and approved.json["status"] == "FINAL"
    again = problem(api.call("PATCH", f"/api/bills/{hooli}/approve", api.login("carol")), 409)
    assert again["detail"].startswith(f"Bill #{hooli} was already approved by sam at ")


def test_sales_cannot_approve_before_the_csm(api, make_api):
    # A fresh two-step bill: generate October as Finance, then Sales tries first.
    token = api.login("fiona")
    generated = api.call("POST", "/api/bills", token, json={"month": "2026-10"})
    assert generated.status_code == 200 and generated.json["created"] > 0
    october = api.bill_id("Acme Analytics", 10)

    refused = problem(api.call("PATCH", f"/api/bills/{october}/approve", api.login("sam")), 409)

    assert refused["detail"] == f"Bill #{october} is waiting for carol (the customer's CSM) to approve first"


def test_generating_says_what_bill_generate_says_and_only_finance_may(api):
    token = api.login("fiona")

    first = api.call("POST", "/api/bills", token, json={"month": "2026-10"}).json
    again = api.call("POST", "/api/bills", token, json={"month": "2026-10"}).json

    totals = format_totals({currency: Decimal(total) for currency, total in first["totals"].items()})
    assert first["created"] > 0 and first["summary"][0] == f"October 2026: {first['created']} bills created, total {totals}"
    assert again["created"] == 0 and again["summary"][0] == "October 2026: 0 bills created" and again["totals"] == {}
    assert again["skipped"]["already billed"] == first["created"]
    assert problem(api.call("POST", "/api/bills", api.login("sam"), json={}), 403)["detail"] == (
        "Only Finance can generate bills")
    future = problem(api.call("POST", "/api/bills", token, json={"month": "2999-01"}), 422)
    assert future["errors"][0]["field"] == "month" and "has not ended yet" in future["detail"]
    with api.db() as session:
        drafted = session.scalars(select(Bill).where(Bill.month == 10)).first()
        assert drafted.actions[0].stakeholder.name == "fiona"


def test_reject_edit_send_and_undo_refuse_bad_input_naming_the_field(api):
    hooli = api.bill_id("Hooli Search", 9)
    fiona, carol = api.login("fiona"), api.login("carol")

    no_reason = problem(api.call("PATCH", f"/api/bills/{hooli}/reject", carol, json={"reason": "  "}), 422)
    assert no_reason["errors"] == [{"field": "reason", "detail": "A reason is required to reject a bill"}]
    cheap = problem(api.call("PATCH", f"/api/bills/{hooli}/edit", fiona, json={"unit_cost": "cheap"}), 422)
    assert cheap["errors"][0]["field"] == "unit_cost" and "must be a decimal number such as 0.0125, not 'cheap'" in cheap["detail"]
    floated = problem(api.call("PATCH", f"/api/bills/{hooli}/edit", fiona, json={"unit_cost": 0.5}), 422)
    assert floated["errors"][0]["field"] == "unit_cost"
    not_json = problem(api.call("PATCH", f"/api/bills/{hooli}/edit", fiona, data="unit_cost=1"), 422)
    assert not_json["detail"] == "the body must be a JSON object (Content-Type: application/json)"
    draft = problem(api.call("PATCH", f"/api/bills/{hooli}/send", fiona), 409)
    assert draft["detail"].startswith(f"Bill #{hooli} is still a DRAFT")
    with api.db() as session:
        assert session.get(Bill, hooli).status is BillStatus.DRAFT


def test_a_bill_goes_the_whole_way_through_the_api(api):
    hooli = api.bill_id("Hooli Search", 9)
    fiona, sam = api.login("fiona"), api.login("sam")

    edited = api.call("PATCH", f"/api/bills/{hooli}/edit", fiona, json={"unit_cost": "0.08"}).json
    assert edited["overage_unit_cost"] == "0.080000" and edited["history"][-1]["action"] == "EDIT"
    assert api.call("PATCH", f"/api/bills/{hooli}/approve", sam).json["status"] == "FINAL"
    undone = api.call("PATCH", f"/api/bills/{hooli}/undo", sam, json={"reason": "too soon"}).json
    assert undone["status"] == "DRAFT" and undone["history"][-1]["comment"] == "too soon"
    api.call("PATCH", f"/api/bills/{hooli}/approve", sam)
    sent = api.call("PATCH", f"/api/bills/{hooli}/send", fiona)

    assert sent.status_code == 200 and sent.json["status"] == "SENT"
    assert list(api.settings.mail_dir.glob(f"bill-{hooli}-*.eml"))
    assert problem(api.call("PATCH", f"/api/bills/{hooli}/undo", fiona), 409)["detail"].endswith(
        "a sent bill cannot be undone")
    assert problem(api.call("PATCH", f"/api/bills/{hooli}/reject", sam, json={"reason": "x"}), 409)
    refused = problem(api.call("PATCH", f"/api/bills/{hooli}/send", fiona, json={"again": True, "delivered": True}),
                      422)
    assert refused["errors"] == [{"field": "delivered", "detail": "give again or delivered, not both"}]
    number = sent.json["invoice_number"]
    assert number.startswith("BP-") and sent.json["issue_date"] and sent.json["due_date"]
    assert set(sent.json["you_can"]) == {"resend", "credit"}

    resent = api.call("PATCH", f"/api/bills/{hooli}/resend", fiona, json={"to": "ap@hooli.example"})
    assert resent.status_code == 200 and resent.json["invoice_number"] == number
    assert resent.json["history"][-1]["action"] == "RESEND" and "ap@hooli.example" in resent.json["history"][-1]["comment"]
    assert problem(api.call("PATCH", f"/api/bills/{hooli}/resend", sam), 403)["detail"] == "Only Finance can resend bills"
    bad_address = problem(api.call("PATCH", f"/api/bills/{hooli}/resend", fiona, json={"to": "nobody"}), 422)
    assert bad_address["errors"][0]["field"] == "to"

    credited = api.call("PATCH", f"/api/bills/{hooli}/credit", fiona, json={"amount": "1.00", "reason": "goodwill"})
    assert credited.status_code == 200 and credited.json["status"] == "SENT"
    [note] = credited.json["credit_notes"]
    assert note["number"].startswith("CN-") and note["amount"] == "1.00" and note["reason"] == "goodwill"
    too_much = problem(api.call("PATCH", f"/api/bills/{hooli}/credit", fiona,
                                json={"amount": "999999.00", "reason": "x"}), 422)
    assert too_much["errors"][0]["field"] == "amount"


def test_every_change_is_queued_for_slack_as_a_click_is(api):
    hooli = api.bill_id("Hooli Search", 9)
    with api.db() as session:
        before = session.scalar(select(Outbox.id).order_by(Outbox.id.desc()).limit(1))

    api.call("PATCH", f"/api/bills/{hooli}/approve", api.login("sam"))

    with api.db() as session:
        queued = session.scalars(select(Outbox).where(Outbox.id > before).order_by(Outbox.id)).all()
    assert [(row.kind, row.bill_id) for row in queued] == [
        (OutboxKind.BILL_MESSAGE, hooli), (OutboxKind.THREAD_REPLY, hooli), (OutboxKind.HOMES, None)]


def test_two_tokens_of_one_account_acting_at_once_change_the_bill_once(api):
    hooli = api.bill_id("Hooli Search", 9)
    tokens = [api.login("sam"), api.login("sam")]
    answers: list = []
    barrier = threading.Barrier(2)

    def approve(token: str) -> None:
        client = api.app.test_client()
        barrier.wait()
        answers.append(client.patch(f"/api/bills/{hooli}/approve", headers={"Authorization": f"Bearer {token}"}))

    threads = [threading.Thread(target=approve, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(answer.status_code for answer in answers) == [200, 409]
    refused = next(answer for answer in answers if answer.status_code == 409)
    assert refused.json["detail"].startswith(f"Bill #{hooli} was already approved by sam at ")
    with api.db() as session:
        approvals = [a for a in session.get(Bill, hooli).actions if a.action.value == "APPROVE"]
    assert len(approvals) == 2  # carol's, undone in the demo data, and one of sam's two tries
    assert all(api.call("GET", "/api/bills", token).status_code == 200 for token in tokens)


# --- operators: accounts and customers -------------------------------------------------------------------


def test_only_operators_create_accounts(api):
    body = {"name": "nina", "role": "sales", "password": "a long password", "email": "nina@example.com"}

    assert problem(api.call("POST", "/api/users", api.login("fiona"), json=body), 403)["detail"] == (
        "only operators (with API_OPERATOR_TOKEN) manage accounts and customers")
    created = api.call("POST", "/api/users", OPERATOR_TOKEN, json=body)

    assert created.status_code == 201 and created.json["role"] == "sales" and created.json["active"] is True
    assert api.login("nina", "a long password")
    assert problem(api.call("POST", "/api/users", OPERATOR_TOKEN, json=body), 409)["detail"] == (
        "an account with that name already exists (nina)")
    short = problem(api.call("POST", "/api/users", OPERATOR_TOKEN, json={**body, "name": "x", "password": "short"}),
                    422)
    assert short["errors"] == [{"field": "password", "detail": "the password needs at least 8 characters"}]


def test_the_operator_token_acts_as_no_account(api):
    hooli = api.bill_id("Hooli Search", 9)

    refused = problem(api.call("PATCH", f"/api/bills/{hooli}/approve", OPERATOR_TOKEN), 403)

    assert refused["detail"].startswith("the operator token acts as no account")
    assert api.call("GET", f"/api/bills/{hooli}", OPERATOR_TOKEN).json["you_can"] == []


def test_a_role_change_that_affects_customers_needs_force(api):
    carol = _user_id(api, "carol")

    refused = problem(api.call("PATCH", f"/api/users/{carol}", OPERATOR_TOKEN, json={"role": "sales"}), 409)

    assert "carol is the CSM of Acme Analytics, Globex Logistics, Tyrell Robotics, Wayne Media" in refused["detail"]
    assert refused["detail"].endswith('send "force": true to change it anyway')
    changed = api.call("PATCH", f"/api/users/{carol}", OPERATOR_TOKEN, json={"role": "sales", "force": True})
    assert changed.status_code == 200 and changed.json["role"] == "sales"
    both = problem(api.call("PATCH", f"/api/users/{carol}", OPERATOR_TOKEN, json={"name": "c", "active": False}),
                   422)
    assert both["detail"] == "give exactly one of name, role or active, not active and name"


def test_a_deactivated_account_cannot_act_and_its_tokens_end(api):
    sam_id, token = _user_id(api, "sam"), api.login("sam")

    deactivated = api.call("PATCH", f"/api/users/{sam_id}", OPERATOR_TOKEN, json={"active": False})

    assert deactivated.json["active"] is False
    assert "this session ended" in problem(api.call("GET", "/api/bills", token), 401)["detail"]
    login = api.client.post("/api/session", json={"name": "sam", "password": PASSWORD})
    assert problem(login, 403)["detail"].startswith("sam's account is deactivated")
    api.call("PATCH", f"/api/users/{sam_id}", OPERATOR_TOKEN, json={"active": True})
    assert api.login("sam")


def test_a_password_reset_ends_the_accounts_sessions(api):
    carol, token = _user_id(api, "carol"), api.login("carol")

    reset = api.call("PUT", f"/api/users/{carol}/password", OPERATOR_TOKEN, json={"password": "brand new secret"})

    assert reset.status_code == 200
    assert problem(api.call("GET", "/api/bills", token), 401)
    assert api.login("carol", "brand new secret")


def test_customers_are_added_and_changed_with_the_csv_files_checks(api):
    body = {"name": "Pied Piper", "billing_address": "5230 Newell Road", "billing_email": "ap@piedpiper.example",
            "monthly_api_limit": 500000, "overage_unit_cost": "0.000125", "start_date": "2026-01-01",
            "require_csm_approval": True, "csm": "carol"}

    created = api.call("POST", "/api/customers", OPERATOR_TOKEN, json=body)

    assert created.status_code == 201 and created.json["csm"]["name"] == "carol"
    changed = api.call("PATCH", f"/api/customers/{created.json['id']}", OPERATOR_TOKEN,
                       json={"monthly_api_limit": 750000, "csm": None})
    assert changed.json["monthly_api_limit"] == 750000 and changed.json["csm"] is None
    assert changed.json["billing_email"] == "ap@piedpiper.example"
    wrong = {**body, "name": "Hooli 2", "billing_email": "nope", "start_date": "2026-02-30"}
    bad = problem(api.call("POST", "/api/customers", OPERATOR_TOKEN, json=wrong), 422)
    assert bad["errors"] == [
        {"field": "billing_email",
         "detail": "billing_email must be an email address such as billing@example.com, not 'nope'"},
        {"field": "start_date", "detail": "start_date '2026-02-30' is not a real date"},
    ]
    not_csm = problem(
        api.call("POST", "/api/customers", OPERATOR_TOKEN, json={**body, "name": "Hooli 2", "csm": "sam"}), 422)
    assert not_csm["errors"] == [{"field": "csm", "detail": "csm 'sam' is a Sales user, not Customer Success"}]
    taken = problem(api.call("POST", "/api/customers", OPERATOR_TOKEN, json=body), 409)
    assert taken["detail"].startswith("a customer named Pied Piper already exists")
    assert problem(api.call("POST", "/api/customers", api.login("fiona"), json=body), 403)


def test_unknown_routes_and_methods_are_problem_documents(api):
    token = api.login("sam")

    assert problem(api.call("GET", "/api/invoices", token), 404)["detail"].endswith(
        "the routes are listed at /api/openapi.json")
    wrong = api.call("DELETE", "/api/bills/1", token)
    assert problem(wrong, 405)["detail"] == "/api/bills/1 does not take DELETE; it takes GET, HEAD, OPTIONS"
    assert problem(api.call("GET", "/api/bills/abc", token), 422)["errors"][0]["field"] == "bill_id"
    unknown = problem(api.call("GET", "/api/bills?state=DRAFT", token), 422)
    assert unknown["errors"] == [{"field": "state", "detail": "is not one this route takes"}]


def _user_id(api, name: str) -> int:
    with api.db() as session:
        return session.scalar(select(User.id).where(User.name == name))


def test_changing_whom_a_customers_bills_wait_for_shows_its_drafts_again_in_slack(api):
    acme, draft = api.customer_id("Acme Analytics"), api.bill_id("Acme Analytics", 9)
    with api.db() as session:
        before = session.scalar(select(Outbox.id).order_by(Outbox.id.desc()).limit(1))

    api.call("PATCH", f"/api/customers/{acme}", OPERATOR_TOKEN, json={"billing_email": "ap@acme.example"})
    api.call("PATCH", f"/api/customers/{acme}", OPERATOR_TOKEN, json={"csm": "casey"})

    with api.db() as session:
        queued = session.scalars(select(Outbox).where(Outbox.id > before).order_by(Outbox.id)).all()
    assert [(row.kind, row.bill_id) for row in queued] == [(OutboxKind.BILL_MESSAGE, draft), (OutboxKind.HOMES, None)]
