"""App Home refreshes are coalesced: a burst of changes republishes each Home once, showing the last state."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from bot import workflow
from bot.billing import generate_month
from bot.periods import Period
from db.models import Bill, Role
from tests.factories import add_customer

PERIOD = Period(2026, 10)


def test_a_burst_of_changes_republishes_each_home_once(make_slack):
    slack = make_slack(deliver=False)  # the burst is queued while no worker runs
    fiona = slack.user("fiona", Role.FINANCE, "UFIONA01")
    sam = slack.user("sam", Role.SALES, "USAM0001")
    slack.user("carol", Role.CUSTOMER_SUCCESS, "UCAROL01")
    with slack.db() as session:
        for name in ("Acme", "Globex", "Initech"):
            add_customer(session, name, usage={(2026, 10): 3_000})
    with slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=fiona, today=date(2026, 11, 3))
    with slack.db() as session:
        bill_ids = list(session.scalars(select(Bill.id).order_by(Bill.id)))
    for bill_id in bill_ids:
        with slack.db() as session:
            workflow.approve(session=session, bill_id=bill_id, actor=sam)

    make_slack()  # a worker starts and delivers the whole burst
    slack.settle()

    published = [call["user_id"] for call in slack.fake.calls("views.publish")]
    assert sorted(published) == ["UCAROL01", "UFIONA01", "USAM0001"]  # once each, not once per change
    assert "No bills are waiting for your approval" in str(slack.fake.home_view("USAM0001")["blocks"])
    assert "3 bills" in str(slack.fake.home_view("UFIONA01")["blocks"])
