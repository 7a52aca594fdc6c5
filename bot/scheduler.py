"""Scheduled work (SPEC §5): the monthly generation and the approvers' daily reminders.

Every worker runs the same APScheduler schedule; the database decides which instance runs an occurrence.
An occurrence is claimed by inserting (job, fire time) into `scheduled_runs` in the transaction that does
its work, so with any number of instances each occurrence runs once: the others' inserts collide with
the key and roll back. At start, the latest occurrence of each job within `CATCH_UP` that no instance
ran (every instance was down) is run once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot import absences, approval, billing, outbox
from bot.errors import BillProcessError
from bot.home import reminders_due
from bot.periods import Period
from bot.settings import Settings
from db.models import ScheduledRun, User, utcnow

log = logging.getLogger(__name__)

# A missed occurrence younger than this runs when an instance starts; an older one is skipped.
CATCH_UP = timedelta(hours=24)
GENERATE, REMIND, ABSENCES = "generate", "remind", "absences"
# Just after midnight in TIMEZONE: absences whose last day has passed end, and what shows them is redrawn.
ABSENCES_CRON = "5 0 * * *"


def last_fire_time(trigger: CronTrigger, now: datetime, since: datetime) -> datetime | None:
    """The trigger's latest fire time in (since, now], if any."""
    latest = None
    fire = trigger.get_next_fire_time(None, since + timedelta(microseconds=1))
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return latest


class Scheduler:
    """The schedule of one process; `start()` it with the delivery workers, `stop()` it with them."""

    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings):
        self.sessions = sessions
        self.settings = settings
        self.jobs: dict[str, tuple[CronTrigger, Callable[[Session, datetime], str]]] = {}
        zone = settings.zone
        if settings.generate_cron:
            self.jobs[GENERATE] = (CronTrigger.from_crontab(settings.generate_cron, timezone=zone), self._generate)
        if settings.reminder_cron:
            self.jobs[REMIND] = (CronTrigger.from_crontab(settings.reminder_cron, timezone=zone), self._remind)
        self.jobs[ABSENCES] = (CronTrigger.from_crontab(ABSENCES_CRON, timezone=zone), self._end_absences)
        self._scheduler = BackgroundScheduler(timezone=zone)

    def start(self) -> Scheduler:
        now = datetime.now(self.settings.zone)
        for name, (trigger, _) in self.jobs.items():
            missed = last_fire_time(trigger, now, now - CATCH_UP)
            if missed is not None:
                self._scheduler.add_job(self.run, args=(name, missed), id=f"{name}-catch-up")
            self._scheduler.add_job(self._fire, trigger, args=(name,), id=name, coalesce=True,
                                    misfire_grace_time=int(CATCH_UP.total_seconds()))
        self._scheduler.start()
        return self

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _fire(self, name: str) -> None:
        trigger, _ = self.jobs[name]
        now = datetime.now(self.settings.zone)
        fire_time = last_fire_time(trigger, now, now - CATCH_UP)
        if fire_time is not None:
            self.run(name, fire_time)

    def run(self, name: str, fire_time: datetime) -> bool:
        """Run the occurrence of `name` at `fire_time` unless an instance already did; True when this one did."""
        _, work = self.jobs[name]
        try:
            with self.sessions() as session:
                with session.begin():
                    ran = session.scalar(
                        select(ScheduledRun.job).where(ScheduledRun.job == name, ScheduledRun.fire_time == fire_time)
                    )
                if ran:
                    return False
                outcome = work(session, fire_time)
        except IntegrityError:
            log.info("scheduled %s of %s ran on another instance", name, fire_time.isoformat())
            return False
        except BillProcessError as refusal:  # e.g. the month to generate has not ended in this time zone
            log.warning("scheduled %s of %s did not run: %s", name, fire_time.isoformat(), refusal)
            return False
        except DBAPIError as error:
            log.error("scheduled %s of %s could not run: database unavailable (%s)", name, fire_time.isoformat(),
                      type(error.orig or error).__name__)
            return False
        log.info("scheduled %s of %s: %s", name, fire_time.isoformat(), outcome)
        return True

    def _claim(self, session: Session, name: str, fire_time: datetime) -> None:
        session.add(ScheduledRun(job=name, fire_time=fire_time, started_at=utcnow()))
        session.flush()  # another instance's claim of the same occurrence collides here

    def _generate(self, session: Session, fire_time: datetime) -> str:
        """Generate the month before the occurrence's month, as the scheduler (no stakeholder)."""
        period = Period.containing(fire_time.date()).shifted(-1)
        summary = billing.generate_month(
            session=session, period=period, actor=None, today=fire_time.date(),
            before_commit=lambda: self._claim(session, GENERATE, fire_time),
        )
        return "; ".join(summary.lines())

    def _end_absences(self, session: Session, fire_time: datetime) -> str:
        """End the absences whose last day is over, so that bill messages and Homes stop showing them."""
        with session.begin():
            self._claim(session, ABSENCES, fire_time)
            ended = absences.end_past(session=session, today=fire_time.date())
        return f"{ended} absence(s) ended"

    def _remind(self, session: Session, fire_time: datetime) -> str:
        """Queue one reminder for each person with bills waiting on them longer than REMINDER_AFTER_DAYS.

        Someone away that day is not reminded: whoever approves for them is.
        """
        day = fire_time.date().isoformat()
        queued = 0
        with session.begin():
            self._claim(session, REMIND, fire_time)
            linked = session.scalars(select(User).where(User.slack_user_id.is_not(None)).order_by(User.name)).all()
            for user in linked:
                if approval.absence(user, fire_time.date()) is not None:
                    continue
                due = reminders_due(session=session, user=user, now=utcnow(),
                                    after_days=self.settings.reminder_after_days)
                if due and outbox.reminder(session, user.slack_user_id, day):
                    queued += 1
        return f"{queued} reminder(s) queued"
