"""Demo data: accounts, ten customers, a year of usage, and two months of bills in every state.

Everything is relative to the previous calendar month (P): usage runs from P-11 to P, bills exist for
P-2 and P-1 with a realistic history, and P is left for `billprocess bills generate`.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import accounts, billing, workflow
from bot.errors import Conflict, InvalidInput
from bot.invoices import Invoicing
from bot.mailer import Mailer
from bot.periods import Period
from bot.settings import Settings
from db.models import Bill, BillStatus, Customer, Role, Usage, User

MONTHS_OF_USAGE = 12

ACCOUNTS = [
    ("fiona", Role.FINANCE, "fiona@example.com"),
    ("carol", Role.CUSTOMER_SUCCESS, "carol@example.com"),
    ("casey", Role.CUSTOMER_SUCCESS, "casey@example.com"),
    ("sam", Role.SALES, "sam@example.com"),
]


@dataclass(frozen=True)
class DemoCustomer:
    name: str
    limit: int
    unit_cost: str
    csm_then_sales: bool
    csm: str | None
    months_before_p: int  # how long before P the contract started
    start_day: int = 1
    ended_months_before_p: int | None = None
    # month offset before P (0 = P) → how far over the limit usage went that month
    overages: dict[int, str] = field(default_factory=dict)
    currency: str = "USD"


CUSTOMERS = [
    DemoCustomer("Acme Analytics", 1_000_000, "0.01", True, "carol", 30, overages={0: "0.12", 1: "0.08", 2: "0.05", 6: "0.02"}),
    DemoCustomer("Globex Logistics", 500_000, "0.02", False, "carol", 20, overages={0: "0.20", 1: "0.15", 2: "0.10"},
                 currency="EUR"),
    DemoCustomer("Initech Payments", 250_000, "0.04", True, "casey", 18, start_day=15, overages={0: "0.35", 1: "0.04", 3: "0.10"}),
    DemoCustomer("Umbrella Health", 800_000, "0.0125", False, "casey", 26, overages={2: "0.03", 5: "0.06"}),
    DemoCustomer("Hooli Search", 100_000, "0.10", False, None, 15, overages={0: "0.50", 1: "0.25"}),
    DemoCustomer("Stark Mobility", 750_000, "0.015", True, None, 14, overages={0: "0.07", 1: "0.30"}),
    DemoCustomer("Wayne Media", 300_000, "0.03", False, "carol", 13, overages={0: "0.18", 2: "0.09"}),
    DemoCustomer("Soylent Foods", 200_000, "0.05", False, "casey", 22, ended_months_before_p=4, overages={5: "0.20"}),
    DemoCustomer("Tyrell Robotics", 600_000, "3", False, "carol", 12, overages={1: "0.05"}, currency="JPY"),
    DemoCustomer("Cyberdyne Cloud", 400_000, "0.025", False, "casey", 1, start_day=10, overages={0: "0.40"}),
]


def _usage(customer: DemoCustomer, index: int, offset: int) -> int:
    if offset in customer.overages:
        return int(customer.limit * (1 + Decimal(customer.overages[offset])))
    # Ordinary months sit between 60% and 87% of the limit, varying by customer and month.
    return int(customer.limit * (Decimal("0.60") + Decimal("0.03") * ((offset * 7 + index * 3) % 10)))


def _add_accounts(session: Session, rounds: int) -> dict[str, User]:
    users = {}
    for name, role, email in ACCOUNTS:
        # Demo accounts get unguessable passwords; people reach them through Slack links.
        password = secrets.token_urlsafe(16)
        users[name] = accounts.add_user(
            session=session, name=name, role=role, email=email, password=password, rounds=rounds
        )
    return users


def _add_customers(session: Session, users: dict[str, User], p: Period) -> int:
    usage_rows = 0
    with session.begin():
        for index, demo in enumerate(CUSTOMERS):
            start = p.shifted(-demo.months_before_p).first_day.replace(day=demo.start_day)
            end = p.shifted(-demo.ended_months_before_p).last_day if demo.ended_months_before_p else None
            customer = Customer(
                name=demo.name,
                billing_address=f"{100 + index * 7} Market Street, Suite {index + 1}, Springfield",
                billing_email=f"billing@{demo.name.split()[0].lower()}.example.com",
                monthly_api_limit=demo.limit,
                overage_unit_cost=Decimal(demo.unit_cost),
                start_date=start,
                end_date=end,
                require_csm_approval=demo.csm_then_sales,
                csm_id=users[demo.csm].id if demo.csm else None,
                currency=demo.currency,
            )
            session.add(customer)
            session.flush()
            for offset in range(MONTHS_OF_USAGE):
                month = p.shifted(-offset)
                if month.last_day < start or (end and month.first_day > end):
                    continue
                session.add(
                    Usage(customer_id=customer.id, year=month.year, month=month.month,
                          api_usage=_usage(demo, index, offset))
                )
                usage_rows += 1
    return usage_rows


def _bill_of(session: Session, customer_name: str, period: Period) -> int:
    return session.scalar(
        select(Bill.id).join(Customer).where(
            Customer.name == customer_name, Bill.year == period.year, Bill.month == period.month
        )
    )


def _history(
    users: dict[str, User], deliver: Callable[[Bill], None], invoicing: Invoicing
) -> dict[tuple[int, str], list]:
    """What happened to each demo bill: (months before P, customer) → the steps taken, in order."""
    fiona, carol, casey, sam = (users[name] for name in ("fiona", "carol", "casey", "sam"))
    sending = {"deliver": deliver, "invoicing": invoicing}
    approve, reject, edit, send, undo = workflow.approve, workflow.reject, workflow.edit, workflow.send, workflow.undo
    return {
        (2, "Acme Analytics"): [(approve, carol, {}), (approve, sam, {}), (send, fiona, sending)],
        (2, "Globex Logistics"): [(approve, sam, {}), (send, fiona, sending)],
        (2, "Umbrella Health"): [
            (reject, casey, {"reason": "The spike came from our own outage retries on the 14th; waived."}),
        ],
        (2, "Wayne Media"): [
            (edit, fiona, {"unit_cost": "0.025"}),
            (approve, carol, {}),
            (send, fiona, sending),
        ],
        (1, "Acme Analytics"): [(approve, carol, {})],
        (1, "Globex Logistics"): [(approve, sam, {})],
        (1, "Initech Payments"): [
            (reject, casey, {"reason": "Customer is migrating to the annual plan; credit agreed with Sales."}),
        ],
        (1, "Hooli Search"): [
            (approve, carol, {}),
            (undo, carol, {"reason": "Approved the wrong bill; Sales is still checking the numbers."}),
        ],
        (1, "Stark Mobility"): [(edit, fiona, {"unit_cost": "0.0125"})],
        (1, "Tyrell Robotics"): [(approve, sam, {}), (send, fiona, sending)],
    }


def _check_writable(folder: Path) -> None:
    """Seeding sends bills (to .eml files): fail before writing anything when that cannot work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InvalidInput(f"MAIL_DIR {folder} is not writable ({error.strerror}); seed writes demo emails there") from None


def seed_demo(*, session: Session, settings: Settings, today: date) -> list[str]:
    """Fill an empty database with the demo data; returns what was done, as lines to print."""
    with session.begin():
        user_names = set(session.scalars(select(User.name)))
        customer_names = set(session.scalars(select(Customer.name)))
        sent = session.scalar(select(func.count()).select_from(Bill).where(Bill.status == BillStatus.SENT))
    if user_names or customer_names:
        demo = user_names >= {name for name, _, _ in ACCOUNTS} and customer_names >= {c.name for c in CUSTOMERS}
        if demo and sent:
            return ["The demo data is already in place; nothing was added."]
        if demo:
            raise Conflict("an earlier seed stopped part-way; start again from an empty database")
        raise Conflict("the database already has accounts or customers; seed only fills an empty database")
    _check_writable(settings.mail_dir)
    p = Period.containing(today).shifted(-1)
    users = _add_accounts(session, settings.bcrypt_rounds)
    usage_rows = _add_customers(session, users, p)

    # Demo emails are always written to MAIL_DIR, never sent to the made-up customers.
    mailer = Mailer(smtp_url=None, mail_dir=settings.mail_dir, mail_from=settings.mail_from, paper_size=settings.paper_size)
    history = _history(users, mailer.send_bill, Invoicing.from_settings(settings))
    for months_back in (2, 1):
        period = p.shifted(-months_back)
        billing.generate_month(session=session, period=period, actor=users["fiona"], today=today)
        for (back, customer), steps in history.items():
            if back != months_back:
                continue
            with session.begin():
                bill_id = _bill_of(session, customer, period)
            for service, actor, extra in steps:
                service(session=session, bill_id=bill_id, actor=actor, **extra)
    with session.begin():
        bill_count = session.scalar(select(func.count()).select_from(Bill))
    return [
        f"Seeded {len(ACCOUNTS)} accounts ({', '.join(name for name, _, _ in ACCOUNTS)}), "
        f"{len(CUSTOMERS)} customers and {usage_rows} months of usage up to {p.label}.",
        f"{bill_count} bills for {p.shifted(-2).label} and {p.shifted(-1).label} are in every state "
        f"(DRAFT, FINAL, WRITEOFF, SENT); see them with `billprocess bills list`.",
        f"{p.label} is not billed yet: run `billprocess bills generate`.",
    ]
