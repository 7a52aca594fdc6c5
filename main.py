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
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot import accounts, billing, bills, outbox, workflow
from bot.errors import BillProcessError, InvalidInput
from bot.formatting import action_line, bill_details, bill_row, outbox_line, timestamp
from bot.imports import import_customers, import_usage
from bot.periods import Period
from bot.settings import Settings, SettingsError, load_settings
from db import migrate
from db.session import make_engine, make_session_factory

log = logging.getLogger("billprocess")


class Cli:
    """What every command needs: the settings, the database, and somewhere to print."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._schema_checked = False

    @cached_property
    def engine(self) -> Engine:
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
        return datetime.now(self.settings.zone).date()

    def actor(self, session: Session, name: str):
        return accounts.get_user(session=session, name=name)

    @staticmethod
    def out(line: str = "") -> None:
        print(line)


# --- db and seed -------------------------------------------------------------------------------


def db_upgrade(cli: Cli, args) -> None:
    migrate.upgrade(cli.engine)
    cli.out("The database schema is up to date.")


def seed(cli: Cli, args) -> None:
    from bot.seed import seed_demo

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

    with cli.session():
        pass  # refuses to start on a missing or outdated schema
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
    from handlers.web import serve as serve_http

    check_startup(cli.settings, port=cli.settings.port)
    with _slack_app(cli, socket_mode=False) as app:
        secret = cli.settings.slack_signing_secret.get_secret_value()
        serve_http(app, cli.engine, signing_secret=secret, port=cli.settings.port)


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
    with cli.session():
        pass  # refuses to start on a missing or outdated schema
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
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password (again): "):
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
        slack = user.slack_user_id or "not linked"
        cli.out(f"{user.name:<20} {user.role.label:<17} {user.email or '—':<32} {slack}")


def users_invite(cli: Cli, args) -> None:
    with cli.session() as session:
        invitation = accounts.invite(session=session, name=args.name, rounds=cli.settings.bcrypt_rounds)
    cli.out(f"One-time link code for {invitation.user.name}, valid until {timestamp(invitation.expires_at)}:")
    cli.out(invitation.code)
    cli.out("They link their Slack user by typing: /bill link CODE")


def users_link(cli: Cli, args) -> None:
    with cli.session() as session:
        user = accounts.link(session=session, name=args.name, slack_user_id=args.slack_user_id)
    cli.out(f"Linked {user.name} to Slack user {user.slack_user_id}.")


def users_unlink(cli: Cli, args) -> None:
    with cli.session() as session:
        user = accounts.unlink(session=session, name=args.name)
    cli.out(f"Unlinked {user.name} from Slack.")


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
    cli.out(summary.line(noun))


def customers_import(cli: Cli, args) -> None:
    _import(cli, Path(args.file), import_customers, "customers")


def usage_import(cli: Cli, args) -> None:
    _import(cli, Path(args.file), import_usage, "usage rows")


# --- bills -------------------------------------------------------------------------------------


def bills_generate(cli: Cli, args) -> None:
    period = Period.parse(args.month) if args.month else Period.previous(cli.settings.zone)
    actor = None
    if args.actor:
        with cli.session() as session:
            actor = cli.actor(session, args.actor)
    with cli.session() as session:
        summary = billing.generate_month(session=session, period=period, actor=actor, today=cli.today())
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
    for line in bill_details(bill):
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
    _act(cli, args, workflow.edit, unit_cost=args.unit_cost)


def bills_send(cli: Cli, args) -> None:
    from bot.mailer import Mailer

    if args.delivered:
        _act(cli, args, workflow.mark_delivered)
        return
    _act(cli, args, workflow.send, deliver=Mailer.from_settings(cli.settings).send_bill, again=args.again)


def bills_undo(cli: Cli, args) -> None:
    _act(cli, args, workflow.undo, reason=args.reason)


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

    customers = group("customers", "manage customers")
    command(customers, "import", customers_import, "import customers from a CSV file").add_argument("file")
    usage = group("usage", "manage recorded API usage")
    command(usage, "import", usage_import, "import monthly API usage from a CSV file").add_argument("file")

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
    return parser


def configure_logging(settings: Settings, *, server: bool) -> None:
    """Servers log at LOG_LEVEL; one-off commands print their results and log only warnings (or DEBUG)."""
    level = settings.log_level if server or settings.log_level == "DEBUG" else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # The demo brings its own settings (sandbox/demo.py); a .env meant for real Slack is not its business.
        settings = load_settings(_env_file=None) if args.run is demo else load_settings()
        configure_logging(settings, server=args.run in (serve, socket, worker, demo))
        args.run(Cli(settings), args)
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
    except BrokenPipeError:
        # The reader went away (`billprocess bills list | head`): stop quietly, as other commands do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
