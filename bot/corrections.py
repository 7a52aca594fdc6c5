"""Usage corrected after a month was billed: what a usage import does to that month's bills.

Runs in the import's transaction, so the new usage, the bills it changes, their actions and their Slack
messages commit together (or not at all). Each bill is handled by `workflow.correct_usage`: a DRAFT or
FINAL bill is recomputed, a WRITEOFF bill stays with a note, a SENT bill is never changed and is flagged
for a credit note. A customer with no bill for a billed month whose new usage now qualifies gets its
bill, by the same rules as generation (`billing.create_bills`). A month counts as billed once it has at
least one bill; a month nobody has billed yet is left to generation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import workflow
from bot.billing import create_bills
from bot.periods import Period
from db.models import Bill

CHUNK = 400  # customer ids per IN list


@dataclass(frozen=True)
class CorrectedUsage:
    """One month of one customer's usage that an import created or changed."""

    customer_id: int
    period: Period
    api_usage: int


@dataclass
class CorrectionSummary:
    recomputed: int = 0
    created: int = 0
    left: int = 0
    flagged: int = 0
    messages: list[str] = field(default_factory=list)  # one line per bill touched, for the person importing

    def lines(self) -> list[str]:
        """The summary as a person reads it; nothing when no bill was concerned."""
        if not (self.recomputed or self.created or self.left or self.flagged):
            return []
        head = (
            f"Billed months: {self.recomputed} {_bills(self.recomputed)} recomputed, {self.created} created,"
            f" {self.left} written off left as they are, {self.flagged} sent {_bills(self.flagged)} flagged"
        )
        return [head, *(f"  {message}" for message in self.messages)]


def _bills(count: int) -> str:
    return "bill" if count == 1 else "bills"


def apply(session: Session, changes: Iterable[CorrectedUsage], *, cause: str) -> CorrectionSummary:
    """Bring the bills of the months in `changes` in line with their new usage, in the caller's transaction."""
    summary = CorrectionSummary()
    by_period: dict[Period, dict[int, int]] = defaultdict(dict)
    for change in changes:
        by_period[change.period][change.customer_id] = change.api_usage
    if not by_period:
        return summary
    bills = _locked_bills(session, by_period)
    billed = _billed_periods(session, by_period)
    for period in sorted(by_period):
        usage = by_period[period]
        for customer_id in sorted(usage):
            bill = bills.get((customer_id, period))
            correction = workflow.correct_usage(session, bill, usage[customer_id], cause) if bill else None
            if correction is not None:
                setattr(summary, correction.outcome, getattr(summary, correction.outcome) + 1)
                summary.messages.append(correction.message)
        unbilled = [customer_id for customer_id in sorted(usage) if (customer_id, period) not in bills]
        if unbilled and period in billed:  # a month nobody billed yet is left to generation
            created = create_bills(session, period, None, customer_ids=unbilled, cause=f"created by the {cause}")
            summary.created += created.created
            if created.created:
                noun = "bill" if created.created == 1 else "bills"
                summary.messages.append(f"{period.label}: {created.created} new {noun} for the corrected usage")
    return summary


def _locked_bills(session: Session, by_period: dict[Period, dict[int, int]]) -> dict[tuple[int, Period], Bill]:
    """The bills of the customers and months corrected, locked for this transaction, by customer and month."""
    customer_ids = sorted({customer_id for usage in by_period.values() for customer_id in usage})
    years = sorted({period.year for period in by_period})
    found: dict[tuple[int, Period], Bill] = {}
    for start in range(0, len(customer_ids), CHUNK):
        query = (
            select(Bill)
            .where(Bill.customer_id.in_(customer_ids[start : start + CHUNK]), Bill.year.in_(years))
            .order_by(Bill.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        for bill in session.scalars(query):
            period = Period(bill.year, bill.month)
            if bill.customer_id in by_period.get(period, {}):
                found[(bill.customer_id, period)] = bill
    return found


def _billed_periods(session: Session, by_period: dict[Period, dict[int, int]]) -> set[Period]:
    """Which of the months have at least one bill (of any customer)."""
    years = sorted({period.year for period in by_period})
    rows = session.execute(select(Bill.year, Bill.month).where(Bill.year.in_(years)).distinct())
    return {Period(year, month) for year, month in rows} & set(by_period)
