"""BillProcess entry point: builds the settings and the database, and runs the command line."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import alembic.util
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot import absences, accounts, approval, billing, bills, outbox, workflow
from bot.errors import BillProcessError, InvalidInput
from bot.formatting import action_line, bill_details, bill_row, calls, money, outbox_line, timestamp
from bot.formatting import unit_cost as unit_cost_text
from bot.imports import import_customers, import_usage
from bot.invoices import Invoicing
from bot.periods import Period
from bot.settings import Settings, SettingsError, load_settings
from db import migrate
from db.models import ActionOrigin
from db.session import make_engine, make_session_factory

log = logging.getLogger("billprocess")


class Cli:
    """What every command needs: the settings, the database, and somewhere to print.

    A command that `creates_database` may start a SQLite database where there is none; any other says
    there is none instead of leaving an empty file behind.
    """

    def __init__(self, settings: Settings, *, creates_database: bool = False):
        self.settings = settings
        self.creates_database = creates_database
        self.new_database = False  # True once the engine is made for a SQLite file that did not exist
        self._schema_checked = False

    @cached_property
    def engine(self) -> Engine:
        path = sqlite_file(self.settings.sqlalchemy_url)
        if path is not None and not path.exists():
            if not self.creates_database:
                where = f"at {path}" if path.is_absolute() else f"here ({path})"
                raise BillProcessError(
                    f"no database {where}: run `billprocess db upgrade` to create it"
                    " (or set DATABASE_URL to the database to use)"
                )
            self.new_database = True
        return make_engine(self.settings.sqlalchemy_url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        if not self._schema_checked:
            if not migrate.is_current(self.engine):
                raise BillProcessError(
                    "the database schema is missing or out of date; run `billprocess db upgrade` first"
                )
            self._schema_checked = True
        with make_session_factory(self.engine)() as session:
            yield session

    def today(self):
        return self.settings.today()

    def check_policy(self) -> None:
        """Refuse to start on a policy naming a person who has no account (and on a missing schema)."""
        with self.session() as session:
            try:
                approval.check_people(approval.in_force(), session)
            except approval.PolicyError as error:
                raise SettingsError(f"APPROVAL_POLICY {error}") from None

    def actor(self, session: Session, name: str):
        """The account named by `--as`; a deactivated one may not act."""
        return accounts.acting_user(session=session, name=name)

    @staticmethod
    def out(line: str = "") -> None:
        print(line)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


# --- db and seed -------------------------------------------------------------------------------


def db_upgrade(cli: Cli, args) -> None:
    migrate.upgrade(cli.engine)
    cli.out("The database schema is up to date.")


def seed(cli: Cli, args) -> None:
    from bot.seed import seed_demo

    engine = cli.engine
    if cli.new_database:
        migrate.upgrade(engine)
        cli.out("Created the database.")
    with cli.session() as session:
        for line in seed_demo(session=session, settings=cli.settings, today=cli.today()):
            cli.out(line)


# --- Slack ------------------------------------------------------------------------------------

STARTUP_TIMEOUT = 10  # seconds Slack has to answer the start-up checks
# What Slack answers when it does not take a token (as opposed to being unwell).
REFUSED_CREDENTIALS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type"}
)


def check_startup(settings: Settings, *, socket_mode: bool = False, port: int | None = None) -> None:
    """Stop with one line before anything is logged as started: a missing setting, `port` taken,
    Slack unreachable, or a token Slack refuses.

    `serve` passes its port (HTTP mode also needs the signing secret), `socket` socket_mode=True (and
    the app-level token), `worker` neither.
    """
    from handlers.app import require

    needed = ["slack_bot_token"]
    if socket_mode:
        needed.append("slack_app_token")
    if port is not None:
        needed.append("slack_signing_secret")
    require(settings, *needed)
    if not settings.bills_channel:
        raise SettingsError(
            "BILLS_CHANNEL must be set to the ID of the channel bills are posted to (see README: Slack app)"
        )
    if port is not None:
        _check_port(port)
    _check_slack(settings, socket_mode=socket_mode)


def _check_port(port: int) -> None:
    import socket as sockets  # `socket` here is the Socket Mode command

    with sockets.socket() as probe:
        # As the HTTP server binds it: a port in TIME_WAIT is free, one another program listens on is not.
        probe.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as error:  # in use, or reserved for root
            raise BillProcessError(f"cannot listen on port {port} ({error.strerror}); set PORT to a free one") from None


def _check_slack(settings: Settings, *, socket_mode: bool) -> None:
    """Ask Slack once whether it takes the bot token (and, in Socket Mode, the app-level token)."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    # No retries, and no log lines of the client's own: a failure is the one `error:` line.
    quiet = logging.getLogger("billprocess.startup")
    quiet.disabled = True
    client = WebClient(base_url=settings.slack_api_url, timeout=STARTUP_TIMEOUT, retry_handlers=[], logger=quiet)
    checks = [("SLACK_BOT_TOKEN", lambda: client.auth_test(token=settings.slack_bot_token.get_secret_value()))]
    if socket_mode:
        app_token = settings.slack_app_token.get_secret_value()
        checks.append(("SLACK_APP_TOKEN", lambda: client.apps_connections_open(app_token=app_token)))
    for name, ask in checks:
        try:
            ask()
        except (SlackApiError, OSError) as error:
            raise _slack_failure(settings, name, error) from None


def _slack_failure(settings: Settings, name: str, error: Exception) -> BillProcessError:
    """The one line for a call to Slack, made with the token in setting `name`, that failed."""
    from slack_sdk.errors import SlackApiError

    url = settings.slack_api_url
    if not isinstance(error, SlackApiError):  # refused, timed out, unknown host (URLError wraps them)
        reason = getattr(error, "reason", error)
        return BillProcessError(f"cannot reach Slack at {url}: {getattr(reason, 'strerror', None) or reason}")
    answer = error.response
    code = answer.get("error") if answer.status_code == 200 else None
    if code not in REFUSED_CREDENTIALS:
        return BillProcessError(f"cannot use Slack at {url}: it answered {code or f'HTTP {answer.status_code}'}")
    hint = "; it must be the app-level token (xapp-…)" if code == "not_allowed_token_type" else ""
    return BillProcessError(f"Slack did not accept the app's credentials: {name} was refused ({code}){hint}")


def _connect_socket_mode(settings: Settings, app):
    """Open the Socket Mode connection and return its handler, or stop with one line."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
    try:
        handler.connect()
    except (SlackApiError, OSError) as error:
        handler.close()
        raise _slack_failure(settings, "SLACK_APP_TOKEN", error) from None
    if not handler.client.is_connected():  # the client logs why and does not raise
        handler.close()
        raise BillProcessError("cannot open the Socket Mode connection to Slack (see the log above)")
    return handler


@contextmanager
def _slack_app(cli: Cli, *, socket_mode: bool):
    """The Slack app, with the delivery worker in a child process, stopped on the way out."""
    from slack_bolt.error import BoltError

    from handlers.app import create_app
    from handlers.worker import WorkerProcess

    cli.check_policy()
    try:
        app = create_app(cli.settings, make_session_factory(cli.engine), socket_mode=socket_mode)
    except BoltError as error:
        raise BillProcessError(f"Slack did not accept the app's credentials: {error}") from None
    worker = WorkerProcess(cli.settings).start()
    try:
        yield app
    finally:
        worker.close()


def serve(cli: Cli, args) -> None:
    from handlers.api import create_api
    from handlers.web import serve as serve_http

    check_startup(cli.settings, port=cli.settings.port)
    with _slack_app(cli, socket_mode=False) as app:
        secret = cli.settings.slack_signing_secret.get_secret_value()
        api = create_api(cli.settings, make_session_factory(cli.engine))
        serve_http(app, cli.engine, signing_secret=secret, port=cli.settings.port, api=api,
                   trusted_proxy=cli.settings.trusted_proxy)


def socket(cli: Cli, args) -> None:
    import signal
    import threading

    check_startup(cli.settings, socket_mode=True)
    with _slack_app(cli, socket_mode=True) as app:
        # SIGTERM (how services are stopped) unwinds like Ctrl-C, so the worker process is stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        handler = _connect_socket_mode(cli.settings, app)
        log.info("BillProcess connected to Slack in Socket Mode")
        try:
            threading.Event().wait()  # the connection's own threads handle Slack's requests
        finally:
            handler.close()


def worker(cli: Cli, args) -> None:
    """Deliver the outbox and run the scheduled jobs, without serving Slack's requests."""
    import signal
    import threading

    from handlers.worker import run_worker

    check_startup(cli.settings)
    cli.check_policy()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_worker(cli.settings, stop)


def demo(cli: Cli, args) -> None:
    """The whole product on this machine, with a local Slack in the browser (sandbox/demo.py)."""
    from sandbox.demo import run

    try:
        run(folder=Path(args.data), port=args.port, open_browser=args.open)
    except KeyboardInterrupt:  # Ctrl-C while it was starting: what had started was stopped on the way out
        cli.out("Stopped.")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


# --- the outbox ---------------------------------------------------------------------------------


def outbox_list(cli: Cli, args) -> None:
    from bot import outbox

    with cli.session() as session:
        backlog = outbox.backlog(session=session)
        rows = outbox.unfinished(session=session)
    lag = backlog.lag(datetime.now(timezone.utc))
    cli.out(f"{backlog.pending} pending, {backlog.failed} failed; oldest pending {_age(lag)} old.")
    for row in rows:
        cli.out(outbox_line(row))


def outbox_retry(cli: Cli, args) -> None:
    from bot import outbox

    ids = [bills.parse_bill_id(text) for text in args.ids]  # the same positive whole numbers
    with cli.session() as session:
        count = outbox.retry(session=session, ids=ids or None)
    noun = "message" if count == 1 else "messages"
    if ids and count < len(ids):
        cli.out(f"Queued {count} failed {noun} again; the others named are not failed (see `billprocess outbox`).")
    else:
        cli.out(f"Queued {count} failed {noun} again.")


def _age(delta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


# --- users -------------------------------------------------------------------------------------


def read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InvalidInput("no terminal to ask for a password; pipe it in with --password-stdin")
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Password (again): ")
    except (KeyboardInterrupt, EOFError):  # Ctrl-C, or Ctrl-D at the prompt
        print(file=sys.stderr)  # the prompt's line is left open
        raise InvalidInput("no password given; nothing was changed") from None
    if first != again:
        raise InvalidInput("the two passwords differ; nothing was changed")
    return first


def users_add(cli: Cli, args) -> None:
    role = accounts.parse_role(args.role)
    password = read_new_password(args.password_stdin)
    with cli.session() as session:
        user = accounts.add_user(
            session=session,
            name=args.name,
            role=role,
            email=args.email,
            password=password,
            rounds=cli.settings.bcrypt_rounds,
        )
    cli.out(f"Created {user.name} ({user.role.label}).")


def users_list(cli: Cli, args) -> None:
    with cli.session() as session:
        users = accounts.list_users(session=session)
    if not users:
        cli.out("No accounts yet. Add one with `billprocess users add NAME --role ROLE`.")
    for user in users:
        slack = user.slack_user_id or ("deactivated" if not user.active else "not linked")
        cli.out(f"{user.name:<20} {user.role.label:<17} {user.email or '—':<32} {slack}")


def users_invite(cli: Cli, args) -> None:
    with cli.session() as session:
        invitation = accounts.invite(session=session, name=args.name, rounds=cli.settings.bcrypt_rounds)
    cli.out(f"One-time link code for {invitation.user.name}, valid until {timestamp(invitation.expires_at)}:")
    cli.out(invitation.code)
    cli.out(f"They link their Slack user by typing: /bill link {invitation.code}")


def users_link(cli: Cli, args) -> None:
    with cli.session() as session:
        user = accounts.link(session=session, name=args.name, slack_user_id=args.slack_user_id)
    cli.out(f"Linked {user.name} to Slack user {user.slack_user_id}.")


def users_unlink(cli: Cli, args) -> None:
    with cli.session() as session:
        user = accounts.unlink(session=session, name=args.name)
    cli.out(f"Unlinked {user.name} from Slack.")


def users_away(cli: Cli, args) -> None:
    until = absences.parse_day(args.until)
    with cli.session() as session:
        user_id = cli.actor(session, args.name).id
        delegate_id = cli.actor(session, args.delegate).id if args.delegate else None
    with cli.session() as session:
        user = absences.set_away(session=session, user_id=user_id, until=until, delegate_id=delegate_id,
                                 today=cli.today())
        stand_in = approval.absence(user, cli.today()).stand_in
    cli.out(f"{user.name} is away until {until:%Y-%m-%d}; {stand_in} approves the steps that name them.")


def users_back(cli: Cli, args) -> None:
    with cli.session() as session:
        user_id = cli.actor(session, args.name).id
    with cli.session() as session:
        user = absences.set_back(session=session, user_id=user_id, today=cli.today())
    cli.out(f"{user.name} is back: the steps that name them wait for them again.")


# --- the approval policy -----------------------------------------------------------------------


def policy_show(cli: Cli, args) -> None:
    cli.check_policy()
    policy = approval.in_force()
    source = cli.settings.approval_policy
    cli.out(f"Approval policy: {source}" if not policy.is_default else "Approval policy: the default (no policy file)")
    for line in policy.describe():
        cli.out(f"- {line}")


def policy_check(cli: Cli, args) -> None:
    try:
        policy = approval.load_policy(Path(args.file))
    except approval.PolicyError as error:
        raise InvalidInput(str(error)) from None
    if any(rule.person for rule in policy.thresholds):
        with cli.session() as session:  # the people it names must have accounts here
            try:
                approval.check_people(policy, session)
            except approval.PolicyError as error:
                raise InvalidInput(f"{args.file}: {error}") from None
    cli.out(f"{args.file}: valid.")
    for line in policy.describe():
        cli.out(f"- {line}")
# --- managing accounts ---------------------------------------------------------------------------


def users_rename(cli: Cli, args) -> None:
    try:
        with cli.session() as session:
            user = accounts.rename(session=session, account=args.old, new_name=args.new, force=args.force)
    except accounts.NeedsForce as refusal:
        raise BillProcessError(f"{refusal}; add --force to rename anyway") from None
    cli.out(f"Renamed {args.old} to {user.name}.")


def users_set_role(cli: Cli, args) -> None:
    role = accounts.parse_role(args.role)
    try:
        with cli.session() as session:
            change = accounts.set_role(session=session, account=args.name, role=role, force=args.force)
    except accounts.NeedsForce as refusal:
        raise BillProcessError(f"{refusal}; add --force to change it anyway") from None
    cli.out(f"{change.user.name} is {role.label} now (was {change.before.label}).")
    _effects(cli, change.effects)


def _effects(cli: Cli, effects: list[str]) -> None:
    """What a change to an account affects beyond it, one indented line each."""
    for effect in effects:
        cli.out(f"  {effect}.")


def users_deactivate(cli: Cli, args) -> None:
    with cli.session() as session:
        done = accounts.deactivate(session=session, account=args.name)
    slack = f"unlinked from Slack user {done.slack_user_id}" if done.slack_user_id else "not linked to Slack"
    sessions = "API session" if done.sessions_ended == 1 else "API sessions"
    cli.out(f"Deactivated {done.user.name}: {slack}, {done.sessions_ended} {sessions} ended; its history stays.")
    _effects(cli, done.effects)


def users_reactivate(cli: Cli, args) -> None:
    with cli.session() as session:
        user = accounts.reactivate(session=session, account=args.name)
    cli.out(
        f"Reactivated {user.name}. To act in Slack it needs linking again"
        f" (`billprocess users invite {user.name}` or `billprocess users link {user.name} SLACK_USER_ID`)."
    )


def users_reset_password(cli: Cli, args) -> None:
    with cli.session() as session:
        accounts.get_user(session=session, name=args.name)  # before asking for a password
    password = read_new_password(args.password_stdin)
    with cli.session() as session:
        user, ended = accounts.reset_password(
            session=session, account=args.name, password=password, rounds=cli.settings.bcrypt_rounds
        )
    cli.out(f"Set a new password for {user.name}; {ended} API session{'' if ended == 1 else 's'} ended.")


# --- listing and changing customers, listing usage ----------------------------------------------

# The options of `customers add|edit`, by the column of a customers file each one sets.
CUSTOMER_OPTIONS = {
    "billing_address": "--address",
    "billing_email": "--email",
    "monthly_api_limit": "--limit",
    "overage_unit_cost": "--unit-cost",
    "start_date": "--start",
    "end_date": "--end",
    "csm": "--csm",
    "currency": "--currency",
    "require_csm_approval": "--two-step or --one-step",
}
NEEDED_TO_ADD = ("billing_address", "billing_email", "monthly_api_limit", "overage_unit_cost", "start_date")


def _customer_values(args) -> dict[str, str]:
    """The options given, as a customers file's columns would hold them."""
    values = {
        column: getattr(args, option.removeprefix("--").replace("-", "_"))
        for column, option in CUSTOMER_OPTIONS.items()
        if column != "require_csm_approval"
    }
    values = {column: value for column, value in values.items() if value is not None}
    if args.csm_then_sales is not None:
        values["require_csm_approval"] = "true" if args.csm_then_sales else "false"
    return values


def _terms(customer) -> str:
    approval = "two-step" if customer.require_csm_approval else "one-step"
    csm = f", CSM {customer.csm.name}" if customer.csm else ""
    if customer.csm and not customer.csm.active:
        csm += " (deactivated)"
    until = f" to {customer.end_date}" if customer.end_date else ""
    return (
        f"limit {calls(customer.monthly_api_limit)} calls,"
        f" {unit_cost_text(customer.overage_unit_cost, customer.currency)} per call"
        f" over it, from {customer.start_date}{until}, {approval} approval{csm}"
    )


def _usage_line(month) -> str:
    """One month of a customer's usage; a star marks a month over the limit."""
    used = calls(month.api_usage) if month.api_usage is not None else "not recorded"
    return f"  {month.period}  {used:>16}{'  *' if month.over_limit else ''}"


def customers_list(cli: Cli, args) -> None:
    from bot import customers

    with cli.session() as session:
        found = customers.list_customers(session=session)
    if not found:
        cli.out("No customers yet. Add one with `billprocess customers add NAME …` or import a CSV file.")
    for customer in found:
        cli.out(f"{customer.name:<28.28} {_terms(customer)}")


def customers_show(cli: Cli, args) -> None:
    from bot import customers

    with cli.session() as session:
        seen = customers.customer_overview(session=session, name=args.name, today=cli.today())
    customer = seen.customer
    cli.out(f"{customer.name}: {_terms(customer)}")
    cli.out(f"Billing:         {customer.billing_email}, {customer.billing_address}")
    cli.out()
    cli.out("Usage, the 12 months ending last month (* over the limit):")
    for month in seen.months:
        cli.out(_usage_line(month))
    cli.out()
    cli.out(f"Bills ({seen.bill_count}, the latest {len(seen.bills)} shown):" if seen.bills else "No bills yet.")
    for bill in seen.bills:
        cli.out(bill_row(bill))


def customers_add(cli: Cli, args) -> None:
    from bot import customers

    values = {"name": args.name, "require_csm_approval": "false", **_customer_values(args)}
    missing = [CUSTOMER_OPTIONS[column] for column in NEEDED_TO_ADD if column not in values]
    if missing:
        raise InvalidInput(f"a new customer needs {', '.join(missing)}")
    with cli.session() as session:
        customer = customers.add_customer(session=session, values=values, labels=CUSTOMER_OPTIONS)
    cli.out(f"Added {customer.name}: {_terms(customer)}.")


def customers_edit(cli: Cli, args) -> None:
    from bot import customers

    with cli.session() as session:
        customer = customers.edit_customer(
            session=session, customer=args.name, changes=_customer_values(args), labels=CUSTOMER_OPTIONS
        )
    cli.out(f"Changed {customer.name}: {_terms(customer)}.")


def usage_list(cli: Cli, args) -> None:
    from bot import customers

    year = None
    if args.year is not None:
        if not (args.year.isascii() and args.year.isdigit() and len(args.year) == 4):
            raise InvalidInput(f"--year must be a year such as 2026, not {args.year!r}")
        year = int(args.year)
    with cli.session() as session:
        history = customers.usage_history(session=session, name=args.customer, year=year)
    customer = history.customer
    span = f"in {history.year}" if history.year else "every month recorded"
    cli.out(f"{customer.name}: API calls {span} (limit {calls(customer.monthly_api_limit)}; * over it)")
    if not history.months:
        cli.out("  No usage recorded.")
    for month in history.months:
        cli.out(_usage_line(month))


# --- customers and usage -----------------------------------------------------------------------


def _import(cli: Cli, path: Path, run: Callable, noun: str) -> None:
    try:
        with path.open(encoding="utf-8", newline="") as file, cli.session() as session:
            summary = run(session=session, file=file, source=path.name)
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder, not a CSV file") from None
    except PermissionError:
        raise InvalidInput(f"{path} cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path.name} is not a UTF-8 CSV file") from None
    for line in summary.lines(noun):
        cli.out(line)


def customers_import(cli: Cli, args) -> None:
    _import(cli, Path(args.file), import_customers, "customers")


def usage_import(cli: Cli, args) -> None:
    _import(cli, Path(args.file), import_usage, "usage rows")


# --- bills -------------------------------------------------------------------------------------


def bills_generate(cli: Cli, args) -> None:
    period = Period.parse(args.month) if args.month else Period.previous(cli.settings.zone)
    cli.check_policy()  # bills are drafted under the policy in force: it must name only real people
    actor = None
    if args.actor:
        with cli.session() as session:
            actor = cli.actor(session, args.actor)
    with cli.session() as session:
        summary = billing.generate_month(
            session=session, period=period, actor=actor, today=cli.today(), origin=ActionOrigin.OPERATOR
        )
        for line in summary.lines():
            cli.out(line)
        month_bills = bills.list_bills(session=session, period=period)
    if summary.created:
        with cli.session() as session:
            queued = outbox.backlog(session=session).pending
        noun = "message" if queued == 1 else "messages"
        if cli.settings.slack_configured:
            cli.out(f"{queued} {noun} queued for Slack.")
        else:
            cli.out(f"{queued} {noun} queued for Slack (posted once Slack is configured and a worker runs).")
    if month_bills:
        cli.out()
        for bill in month_bills:
            cli.out(bill_row(bill))


def bills_list(cli: Cli, args) -> None:
    status = bills.parse_status(args.status) if args.status else None
    period = Period.parse(args.month) if args.month else None
    with cli.session() as session:
        found = bills.list_bills(session=session, status=status, period=period)
    if not found:
        cli.out("No bills match.")
    for bill in found:
        cli.out(bill_row(bill))


def bills_show(cli: Cli, args) -> None:
    with cli.session() as session:
        bill = bills.get_bill(session=session, bill_id=bills.parse_bill_id(args.id))
        progress = approval.progress(bill, cli.settings.today())
    for line in bill_details(bill, progress):
        cli.out(line)
    current = workflow.sending(bill)
    if current is not None:
        cli.out(f"Sending:         {current.summary}")
        if current.uncertain:
            cli.out(f"                 {current.how_to_send_again}")
    cli.out()
    cli.out("History:")
    for action in bill.actions:
        cli.out("  " + action_line(action))


def _act(cli: Cli, args, service: Callable, **extra) -> None:
    bill_id = bills.parse_bill_id(args.id)
    with cli.session() as session:
        actor = cli.actor(session, args.actor)
    with cli.session() as session:
        bill = service(session=session, bill_id=bill_id, actor=actor, **extra)
    cli.out(f"Bill #{bill.id} ({bill.customer.name}) is now {bill.status.value}.")
    cli.out("  " + action_line(bill.actions[-1]))


def bills_approve(cli: Cli, args) -> None:
    _act(cli, args, workflow.approve)


def bills_reject(cli: Cli, args) -> None:
    _act(cli, args, workflow.reject, reason=args.reason)


def bills_edit(cli: Cli, args) -> None:
    cli.check_policy()  # an edit re-derives the bill's steps under the policy in force
    _act(cli, args, workflow.edit, unit_cost=args.unit_cost)


def bills_send(cli: Cli, args) -> None:
    from bot.mailer import Mailer

    if args.delivered:
        _act(cli, args, workflow.mark_delivered)
        return
    _act(
        cli,
        args,
        workflow.send,
        deliver=Mailer.from_settings(cli.settings).send_bill,
        again=args.again,
        invoicing=Invoicing.from_settings(cli.settings),
    )


def bills_undo(cli: Cli, args) -> None:
    _act(cli, args, workflow.undo, reason=args.reason)


def bills_resend(cli: Cli, args) -> None:
    from bot.mailer import Mailer

    _act(cli, args, workflow.resend, deliver=Mailer.from_settings(cli.settings).resend_bill, to=args.to)


def bills_credit(cli: Cli, args) -> None:
    from bot.mailer import Mailer

    bill_id = bills.parse_bill_id(args.id)
    with cli.session() as session:
        actor = cli.actor(session, args.actor)
    with cli.session() as session:
        credited = workflow.credit(
            session=session,
            bill_id=bill_id,
            actor=actor,
            amount=args.amount,
            reason=args.reason,
            deliver=Mailer.from_settings(cli.settings).send_credit_note,
            invoicing=Invoicing.from_settings(cli.settings),
        )
    note = credited.note
    cli.out(
        f"Credit note {note.number} for {money(note.amount, note.currency)} issued against invoice"
        f" {credited.bill.invoice_number} (bill #{credited.bill.id})."
    )
    if credited.email_error:
        raise BillProcessError(
            f"credit note {note.number} is issued, but emailing it failed: {credited.email_error};"
            f" `billprocess bills resend {credited.bill.id} --as NAME` emails the invoice with its credit notes"
        )
    cli.out(f"  emailed to {credited.bill.customer.billing_email}")


def bills_pdf(cli: Cli, args) -> None:
    from bot.pdf import invoice_pdf

    with cli.session() as session:
        bill = bills.get_bill(session=session, bill_id=bills.parse_bill_id(args.id))
    filename, content = invoice_pdf(bill, paper_size=cli.settings.paper_size)
    path = Path(args.output) if args.output else Path(filename)
    try:
        path.write_bytes(content)
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder; give a file name with -o") from None
    except OSError as error:
        raise InvalidInput(f"cannot write {path}: {error.strerror or error}") from None
    cli.out(f"Wrote the invoice {bill.invoice_number} of bill #{bill.id} to {path}.")


# --- the parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="billprocess", description="Monthly API-overage billing, approved and sent from Slack."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(group, name: str, run: Callable, help: str) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    def group(name: str, help: str):
        sub = commands.add_parser(name, help=help, description=help)
        return sub.add_subparsers(title="commands", metavar="COMMAND", required=True)

    command(commands, "serve", serve, "run the Slack app in HTTP mode (POST /slack/events, GET /healthz) on PORT")
    command(commands, "socket", socket, "run the Slack app in Socket Mode (needs SLACK_APP_TOKEN)")
    command(commands, "worker", worker, "deliver Slack messages and run scheduled jobs, without serving requests")
    sandbox = command(commands, "demo", demo, (
        "try it without a Slack workspace: the app, its worker and a local Slack in the browser on"
        " http://127.0.0.1:PORT, with the demo data (no credentials, no .env)"))
    sandbox.add_argument("--port", type=_port, default=3000, help="where the local Slack listens (default 3000)")
    sandbox.add_argument("--open", action="store_true", help="open it in the browser")
    sandbox.add_argument("--data", default="billprocess-demo", metavar="FOLDER",
                         help="the demo's database, emails and Slack history (default billprocess-demo)")
    box = commands.add_parser("outbox", help="list Slack messages pending or failed", description=(
        "List Slack messages pending or failed: what, which bill, attempts, last error."))
    box.set_defaults(run=outbox_list)
    box_commands = box.add_subparsers(title="commands", metavar="COMMAND")
    command(box_commands, "retry", outbox_retry, "queue failed messages again (all, or the IDs given)").add_argument(
        "ids", nargs="*", metavar="ID")
    db = group("db", "manage the database schema")
    command(db, "upgrade", db_upgrade, "create or upgrade the database schema")
    command(commands, "seed", seed, "fill an empty database with demo accounts, customers, usage and bills")

    users = group("users", "manage accounts")
    add = command(users, "add", users_add, "create an account (asks for its password)")
    add.add_argument("name")
    add.add_argument("--role", required=True, help="finance, customer_success or sales")
    add.add_argument("--email")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    command(users, "list", users_list, "list accounts and their Slack links")
    command(users, "invite", users_invite, "print a one-time code that links a Slack user").add_argument("name")
    linking = command(users, "link", users_link, "link an account to a Slack user ID")
    linking.add_argument("name")
    linking.add_argument("slack_user_id")
    command(users, "unlink", users_unlink, "remove an account's Slack link").add_argument("name")
    away = command(users, "away", users_away, "record an absence: a delegate (or anyone of the role) approves meanwhile")
    away.add_argument("name")
    away.add_argument("--until", required=True, metavar="YYYY-MM-DD", help="the last day away")
    away.add_argument("--delegate", metavar="NAME", help="who approves the steps that name this person")
    command(users, "back", users_back, "end an absence").add_argument("name")

    rules = group("policy", "the approval policy (APPROVAL_POLICY)")
    command(rules, "show", policy_show, "print the approval rules in force")
    command(rules, "check", policy_check, "validate an approval policy file").add_argument("file")
    add_account_commands(users, command)

    customers = group("customers", "manage customers")
    command(customers, "import", customers_import, "import customers from a CSV file").add_argument("file")
    usage = group("usage", "manage recorded API usage")
    command(usage, "import", usage_import, "import monthly API usage from a CSV file").add_argument("file")
    add_customer_commands(customers, usage, command)

    bill = group("bills", "generate, list and act on bills")
    generate = command(bill, "generate", bills_generate, "generate a month's bills (default: last month)")
    generate.add_argument("month", nargs="?", metavar="YYYY-MM")
    generate.add_argument("--as", dest="actor", metavar="NAME", help="the Finance account generating (recorded)")
    listing = command(bill, "list", bills_list, "list bills")
    listing.add_argument("--status", help="DRAFT, FINAL, WRITEOFF or SENT")
    listing.add_argument("--month", metavar="YYYY-MM")
    command(bill, "show", bills_show, "show a bill and its history").add_argument("id")

    def act(name: str, run: Callable, help: str) -> argparse.ArgumentParser:
        sub = command(bill, name, run, help)
        sub.add_argument("id")
        sub.add_argument("--as", dest="actor", required=True, metavar="NAME", help="the account acting")
        return sub

    act("approve", bills_approve, "approve a bill")
    act("reject", bills_reject, "reject a bill (write off its overage)").add_argument("--reason", required=True)
    act("edit", bills_edit, "change a draft's unit cost").add_argument("--unit-cost", required=True)
    after_uncertain = act("send", bills_send, "email an approved bill to the customer").add_mutually_exclusive_group()
    after_uncertain.add_argument(
        "--again", action="store_true",
        help="email it once more after a send that was not confirmed (check with the customer first)")
    after_uncertain.add_argument(
        "--delivered", action="store_true",
        help="record it as sent, without emailing it, after a send that was not confirmed but reached the customer")
    act("undo", bills_undo, "undo the latest action on a bill").add_argument("--reason")
    act("resend", bills_resend, "email a sent bill's invoice again, with the same number").add_argument(
        "--to", metavar="EMAIL", help="send it to this address instead of the customer's billing email")
    credit = act("credit", bills_credit, "issue a credit note against a sent bill and email it")
    credit.add_argument("--amount", required=True, help="in the bill's currency, at most what is left of its total")
    credit.add_argument("--reason", required=True)
    pdf = command(bill, "pdf", bills_pdf, "write a bill's invoice as a PDF file")
    pdf.add_argument("id")
    pdf.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: NUMBER.pdf here)")
    return parser


def add_account_commands(users, command: Callable) -> None:
    """`users rename|set-role|deactivate|reactivate|reset-password`."""
    rename = command(users, "rename", users_rename, "give an account another name")
    rename.add_argument("old", metavar="OLD")
    rename.add_argument("new", metavar="NEW")
    rename.add_argument("--force", action="store_true", help="rename someone the approval policy names")
    role = command(users, "set-role", users_set_role, "change an account's role")
    role.add_argument("name")
    role.add_argument("role", metavar="ROLE", help="finance, customer_success or sales")
    role.add_argument("--force", action="store_true",
                      help="change it even when that affects customers (a CSM) or leaves no Finance account")
    command(users, "deactivate", users_deactivate,
            "stop an account acting anywhere (Slack, API, --as); unlinks it from Slack, keeps its history"
            ).add_argument("name")
    command(users, "reactivate", users_reactivate, "let a deactivated account act again").add_argument("name")
    reset = command(users, "reset-password", users_reset_password,
                    "set a new password (asks for it); ends the account's API sessions")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


def add_customer_commands(customers, usage, command: Callable) -> None:
    """`customers list|show|add|edit` and `usage list`."""
    command(customers, "list", customers_list, "list customers and their terms")
    command(customers, "show", customers_show, "a customer's terms, 12 months of usage and bills").add_argument("name")
    for name, run, help in (
        ("add", customers_add, "add one customer, checked as a row of a customers CSV file"),
        ("edit", customers_edit, "change some of a customer's terms (an empty --end or --csm removes it)"),
    ):
        sub = command(customers, name, run, help)
        sub.add_argument("name")
        sub.add_argument("--email", help="billing email")
        sub.add_argument("--address", help="billing address")
        sub.add_argument("--limit", help="API calls a month without overage")
        sub.add_argument("--unit-cost", help="cost per call over the limit, e.g. 0.000125")
        sub.add_argument("--start", metavar="DATE", help="contract start, YYYY-MM-DD")
        sub.add_argument("--end", metavar="DATE", help="contract end, YYYY-MM-DD")
        sub.add_argument("--csm", metavar="NAME", help="the customer's CSM, a Customer Success account")
        sub.add_argument("--currency", metavar="CUR", help="ISO 4217 code its bills are in (default USD)")
        steps = sub.add_mutually_exclusive_group()
        steps.add_argument("--two-step", dest="csm_then_sales", action="store_true", default=None,
                           help="bills need the CSM's approval, then Sales'")
        steps.add_argument("--one-step", dest="csm_then_sales", action="store_false",
                           help="bills need one approval, by Customer Success or Sales")
    listing = command(usage, "list", usage_list, "a customer's monthly API usage")
    listing.add_argument("--customer", required=True, metavar="NAME")
    listing.add_argument("--year", help="the twelve months of one year (default: every month recorded)")


# Commands that may start a database where there is none; every other says there is none.
CREATES_DATABASE = {db_upgrade, seed, demo}


def configure_logging(settings: Settings, *, server: bool) -> None:
    """Servers log at LOG_LEVEL; one-off commands print their results and log only warnings (or DEBUG)."""
    level = settings.log_level if server or settings.log_level == "DEBUG" else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The PDF library's font subsetting reports every table it drops; only its warnings matter here.
    logging.getLogger("fontTools").setLevel(max(logging.getLevelName(level), logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # The demo brings its own settings (sandbox/demo.py); a .env meant for real Slack is not its business.
        settings = load_settings(_env_file=None) if args.run is demo else load_settings()
        approval.configure(settings)
        configure_logging(settings, server=args.run in (serve, socket, worker, demo))
        args.run(Cli(settings, creates_database=args.run in CREATES_DATABASE), args)
    except (SettingsError, BillProcessError, migrate.NewerSchema) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        print(f"error: cannot use the database: {reason}", file=sys.stderr)
        return 1
    except alembic.util.CommandError as error:
        print(f"error: cannot migrate the database: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: stopped on purpose, nothing to explain
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`billprocess bills list | head`): stop quietly, as other commands do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
