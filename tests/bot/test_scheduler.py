"""Scheduled work: each occurrence runs once however many instances try, as the scheduler, and is caught up."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import func, select

from bot.scheduler import ABSENCES, GENERATE, REMIND, Scheduler, last_fire_time
from bot.settings import load_settings
from db.models import ActionType, Bill, BillAction, Outbox, OutboxKind, Role, User
from tests.factories import add_customer, add_user


def _scheduler(db, database_url, **overrides) -> Scheduler:
    settings = load_settings(_env_file=None, database_url=database_url, timezone="UTC", **overrides)
    return Scheduler(sessions=db, settings=settings)


def test_the_latest_missed_occurrence_is_found_within_the_window():
    trigger = CronTrigger.from_crontab("0 9 1 * *", timezone=timezone.utc)
    now = datetime(2026, 11, 1, 15, 0, tzinfo=timezone.utc)
    assert last_fire_time(trigger, now, now - timedelta(hours=24)) == datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    assert last_fire_time(trigger, now, now - timedelta(hours=5)) is None  # older than the grace period


def test_a_scheduled_generation_runs_once_as_the_scheduler(db, database_url):
    with db() as session:
        add_customer(session, "Acme", usage={(2026, 10): 3_000})
    fire = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    instances = [_scheduler(db, database_url) for _ in range(3)]

    ran = [instance.run(GENERATE, fire) for instance in instances]

    assert ran == [True, False, False]
    with db() as session:
        [bill] = session.scalars(select(Bill)).all()
        [draft] = session.scalars(select(BillAction)).all()
        assert (bill.year, bill.month) == (2026, 10)
        assert draft.action is ActionType.DRAFT and draft.stakeholder_id is None  # the scheduler
        summaries = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == OutboxKind.GENERATION))
        assert summaries == 1


def test_each_approver_is_reminded_once_a_day_of_bills_waiting_on_them(db, database_url):
    with db() as session:
        add_user(session, "sam", Role.SALES, slack_user_id="USAM0001")
        add_user(session, "carol", Role.CUSTOMER_SUCCESS, slack_user_id="UCAROL01")
        add_user(session, "fiona", Role.FINANCE, slack_user_id="UFIONA01")
        add_customer(session, "Acme", usage={(2026, 10): 3_000})
    first = _scheduler(db, database_url, reminder_after_days=0)
    first.run(GENERATE, datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc))
    # A fixed day, so that six hours later is the same day whenever the test runs (how long a bill has waited
    # is judged against the clock, not the occurrence).
    morning = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)

    assert first.run(REMIND, morning) is True
    assert _scheduler(db, database_url, reminder_after_days=0).run(REMIND, morning) is False  # another instance
    assert first.run(REMIND, morning + timedelta(hours=6)) is True  # a second occurrence the same day…

    with db() as session:
        reminded = sorted(session.scalars(select(Outbox.slack_user_id).where(Outbox.kind == OutboxKind.REMINDER)))
    assert reminded == ["UCAROL01", "USAM0001"]  # …adds no second reminder; Finance approves nothing


def test_bills_that_have_not_waited_long_enough_bring_no_reminder(db, database_url):
    with db() as session:
        add_user(session, "sam", Role.SALES, slack_user_id="USAM0001")
        add_customer(session, "Acme", usage={(2026, 10): 3_000})
    scheduler = _scheduler(db, database_url, reminder_after_days=3)
    scheduler.run(GENERATE, datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc))
    assert scheduler.run(REMIND, datetime.now(timezone.utc).replace(microsecond=0)) is True
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == OutboxKind.REMINDER)) == 0


def test_someone_away_is_not_reminded_their_delegate_is(db, database_url):
    with db() as session:
        carol = add_user(session, "carol", Role.CUSTOMER_SUCCESS, slack_user_id="UCAROL01")
        add_user(session, "oscar", Role.CUSTOMER_SUCCESS, slack_user_id="UOSCAR01")
        add_user(session, "sam", Role.SALES, slack_user_id="USAM0001")
        add_customer(session, "Acme", usage={(2026, 10): 3_000}, require_csm_approval=True, csm=carol)
    scheduler = _scheduler(db, database_url, reminder_after_days=0)
    scheduler.run(GENERATE, datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc))
    morning = datetime.now(timezone.utc).replace(microsecond=0)
    with db() as session:
        carol = session.get(User, carol.id)
        carol.away_until = morning.date() + timedelta(days=2)
        session.commit()

    assert scheduler.run(REMIND, morning) is True

    with db() as session:
        reminded = sorted(session.scalars(select(Outbox.slack_user_id).where(Outbox.kind == OutboxKind.REMINDER)))
    assert reminded == ["UOSCAR01"]  # anyone of carol's role stands in; Sales waits for step 1


def test_absences_whose_last_day_passed_end_once_and_redraw_the_bills_naming_them(db, database_url):
    with db() as session:
        carol = add_user(session, "carol", Role.CUSTOMER_SUCCESS, slack_user_id="UCAROL01")
        add_customer(session, "Acme", usage={(2026, 10): 3_000}, require_csm_approval=True, csm=carol)
    scheduler = _scheduler(db, database_url)
    scheduler.run(GENERATE, datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc))
    with db() as session:
        session.get(User, carol.id).away_until = datetime(2026, 11, 30).date()
        session.commit()
        before = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == OutboxKind.BILL_MESSAGE))

    assert scheduler.run(ABSENCES, datetime(2026, 11, 30, 0, 5, tzinfo=timezone.utc)) is True  # still away today
    assert scheduler.run(ABSENCES, datetime(2026, 12, 1, 0, 5, tzinfo=timezone.utc)) is True
    assert _scheduler(db, database_url).run(ABSENCES, datetime(2026, 12, 1, 0, 5, tzinfo=timezone.utc)) is False

    with db() as session:
        assert session.get(User, carol.id).away_until is None
        after = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == OutboxKind.BILL_MESSAGE))
    assert after == before + 1  # the bill waiting for carol shows her as back
