from datetime import date

from bot.billing import generate_month
from bot.periods import Period
from tests.factories import add_customer


def test_generate_creates_a_draft(session, db):
    add_customer(session, usage={(2026, 10): 1500})
    with db() as s:
        summary = generate_month(session=s, period=Period(2026, 10), actor=None, today=date(2026, 11, 1))
    assert summary.created == 1
