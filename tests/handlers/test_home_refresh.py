"""The worker's App Home refreshes are coalesced: a burst of changes republishes each Home once."""

from __future__ import annotations

import time
from datetime import date

from slack_sdk import WebClient
from sqlalchemy import select

from bot import workflow
from bot.billing import generate_month
from bot.notify import Notifier
from bot.periods import Period
from db.models import Bill, Role
from tests.factories import add_customer
from tests.slack_fakes import TOKEN

PERIOD = Period(2026, 10)


def test_a_burst_of_changes_republishes_each_home_once(slack):
    fiona = slack.user("fiona", Role.FINANCE, "UFIONA01")
    sam = slack.user("sam", Role.SALES, "USAM0001")
    slack.user("carol", Role.CUSTOMER_SUCCESS, "UCAROL01")
    with slack.db() as session:
        for name in ("Acme", "Globex", "Initech"):
            add_customer(session, name, usage={(2026, 10): 3_000})
    with slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=fiona, today=date(2026, 11, 3))
    notifier = Notifier(
        client=WebClient(base_url=slack.fake.url, token=TOKEN), sessions=slack.db, settings=slack.settings,
        home_delay=0.5,
    )
    with slack.db() as session:
        bill_ids = list(session.scalars(select(Bill.id)))

    for bill_id in bill_ids:
        with slack.db() as session:
            bill = workflow.approve(session=session, bill_id=bill_id, actor=sam)
        notifier.bill_changed(bill_id, action_id=bill.actions[-1].id)

    assert slack.fake.calls("views.publish") == []  # not yet: they wait for the burst to end
    time.sleep(1.0)
    published = [call["user_id"] for call in slack.fake.calls("views.publish")]
    assert published == ["USAM0001", "UFIONA01", "UCAROL01"]  # the actor first, each person once


def test_stopping_the_worker_publishes_the_homes_still_waiting(slack):
    fiona = slack.user("fiona", Role.FINANCE, "UFIONA01")
    sam = slack.user("sam", Role.SALES, "USAM0001")
    with slack.db() as session:
        add_customer(session, "Acme", usage={(2026, 10): 3_000})
    with slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=fiona, today=date(2026, 11, 3))
    notifier = Notifier(
        client=WebClient(base_url=slack.fake.url, token=TOKEN), sessions=slack.db, settings=slack.settings,
        home_delay=60,
    )
    with slack.db() as session:
        bill_id = session.scalar(select(Bill.id))
    with slack.db() as session:
        bill = workflow.approve(session=session, bill_id=bill_id, actor=sam)
    notifier.bill_changed(bill.id, action_id=bill.actions[-1].id)
    assert slack.fake.calls("views.publish") == []

    notifier.flush()  # what the worker does before it stops

    assert [call["user_id"] for call in slack.fake.calls("views.publish")] == ["USAM0001", "UFIONA01"]
