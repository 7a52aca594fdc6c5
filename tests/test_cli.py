"""The command line, run in-process against the test database as an operator would type it."""

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

import main
from bot.accounts import secret_matches
from bot.formatting import timestamp
from db.models import Bill, BillStatus, LinkCode, Outbox, OutboxStatus, User

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli(cli_env, capsys, monkeypatch):
    def call(*argv: str, stdin: str | None = None):
        return run(capsys, *argv, stdin=stdin, monkeypatch=monkeypatch)

    return call


def test_schema_missing_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    code, out, err = run(capsys, "bills", "list")
    assert code == 1
    assert err == "error: the database schema is missing or out of date; run `billprocess db upgrade` first\n"


def test_db_upgrade_creates_the_schema(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    assert run(capsys, "db", "upgrade")[:2] == (0, "The database schema is up to date.\n")
    code, out, _ = run(capsys, "bills", "list")
    assert (code, out) == (0, "No bills match.\n")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "not a url", "error: DATABASE_URL is not a database URL"),
        ("DATABASE_URL", "mysql://root@localhost/x", "error: DATABASE_URL must be a sqlite:/// or postgresql"),
        ("TIMEZONE", "Mars/Olympus", "error: TIMEZONE unknown time zone 'Mars/Olympus'"),
        ("PORT", "eighty", "error: PORT "),
    ],
)
def test_a_wrong_setting_stops_with_one_line_naming_it(monkeypatch, capsys, variable, value, message):
    monkeypatch.setenv(variable, value)
    code, out, err = run(capsys, "bills", "list")
    assert code == 1
    assert err.startswith(message)
    assert err.count("\n") == 1 and "Traceback" not in err


def test_users_add_keeps_only_a_bcrypt_digest(cli, db):
    code, out, err = cli("users", "add", "fiona", "--role", "finance", "--email", "f@example.com",
                         "--password-stdin", stdin="correct horse battery\n")
    assert (code, out, err) == (0, "Created fiona (Finance).\n", "")
    with db() as session:
        user = session.scalar(select(User))
    assert user.password_digest.startswith("$2b$") and "correct horse" not in user.password_digest
    assert secret_matches("correct horse battery", user.password_digest)
    code, out, _ = cli("users", "list")
    assert re.search(r"fiona\s+Finance\s+f@example.com\s+not linked", out)


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["users", "add", "x", "--role", "boss", "--password-stdin"], "long enough\n", "unknown role 'boss'"),
        (["users", "add", "x", "--role", "sales", "--password-stdin"], "short\n", "at least 8 characters"),
        (["users", "add", "x", "--role", "sales", "--email", "nope", "--password-stdin"], "long enough\n",
         "'nope' is not an email address"),
        (["users", "add", "x", "--role", "sales"], "long enough\n", "pipe it in with --password-stdin"),
    ],
)
def test_users_add_refuses_bad_input(cli, db, argv, stdin, message):
    code, out, err = cli(*argv, stdin=stdin)
    assert code == 1 and message in err and out == ""
    with db() as session:
        assert session.scalar(select(User)) is None


def test_users_add_refuses_a_taken_name(cli):
    cli("users", "add", "sam", "--role", "sales", "--password-stdin", stdin="long enough\n")
    code, _, err = cli("users", "add", "sam", "--role", "finance", "--password-stdin", stdin="long enough\n")
    assert code == 1 and err == "error: an account with that name already exists (sam)\n"


def test_invite_prints_a_code_on_its_own_line_and_stores_only_its_digest(cli, db):
    cli("users", "add", "carol", "--role", "customer_success", "--password-stdin", stdin="long enough\n")
    code, out, _ = cli("users", "invite", "carol")
    assert code == 0
    codes = [line for line in out.splitlines() if re.fullmatch(r"[A-Z2-9]{6}-[A-Z2-9]{6}-[A-Z2-9]{6}", line)]
    assert len(codes) == 1
    selector, *secret = codes[0].split("-")
    with db() as session:
        stored = session.scalar(select(LinkCode))
    assert stored.selector == selector and "".join(secret) not in stored.code_digest
    assert secret_matches("".join(secret), stored.code_digest)


def test_link_and_unlink(cli, db):
    cli("users", "add", "sam", "--role", "sales", "--password-stdin", stdin="long enough\n")
    cli("users", "add", "sue", "--role", "sales", "--password-stdin", stdin="long enough\n")
    assert cli("users", "link", "sam", "U012AB3CD")[:2] == (0, "Linked sam to Slack user U012AB3CD.\n")
    code, _, err = cli("users", "link", "sue", "U012AB3CD")
    assert code == 1 and "already linked to sam" in err
    code, _, err = cli("users", "link", "sue", "not-an-id")
    assert code == 1 and "is not a Slack user ID" in err
    assert cli("users", "unlink", "sam")[:2] == (0, "Unlinked sam from Slack.\n")
    with db() as session:
        assert session.scalar(select(User.slack_user_id).where(User.name == "sam")) is None
    code, _, err = cli("users", "unlink", "nobody")
    assert code == 1 and err == "error: no account named 'nobody'\n"


def test_imports_then_generate(cli, cli_env):
    cli("users", "add", "carol", "--role", "customer_success", "--password-stdin", stdin="long enough\n")
    customers = cli_env / "customers.csv"
    customers.write_text(
        "name,billing_address,billing_email,monthly_api_limit,overage_unit_cost,start_date,end_date,"
        "require_csm_approval,csm\n"
        "Acme,1 Main St,billing@acme.example,1000,0.000125,2024-01-01,,true,carol\n"
        "Globex,2 Side St,billing@globex.example,500,0.02,2024-03-15,,false,\n"
    )
    usage = cli_env / "usage.csv"
    usage.write_text("customer,year,month,api_usage\nAcme,2026,9,90000\nGlobex,2026,9,400\n")
    assert cli("customers", "import", str(customers))[:2] == (0, "2 customers created, 0 updated\n")
    assert cli("usage", "import", str(usage))[:2] == (0, "2 usage rows created, 0 updated\n")

    code, out, _ = cli("bills", "generate", "2026-09")
    assert code == 0
    assert out.splitlines()[0] == "September 2026: 1 bill created, total 11.13"
    assert "1 customer skipped: within limit 1" in out
    assert re.search(r"2026-09\s+DRAFT\s+Acme\s+89,000 calls\s+11.13", out)

    code, out, _ = cli("bills", "generate", "2026-09")
    assert out.splitlines()[0] == "September 2026: 0 bills created, total 0.00"
    assert "2 customers skipped: already billed 1, within limit 1" in out


def test_a_bad_csv_is_reported_row_by_row_and_changes_nothing(cli, cli_env):
    usage = cli_env / "usage.csv"
    usage.write_text("customer,year,month,api_usage\nNobody,2026,13,-1\n")
    code, out, err = cli("usage", "import", str(usage))
    assert code == 1 and out == ""
    assert "row 2" in err
    assert cli("bills", "list")[1] == "No bills match.\n"
    code, _, err = cli("customers", "import", str(cli_env / "missing.csv"))
    assert code == 1 and err == f"error: no such file: {cli_env / 'missing.csv'}\n"


def test_generate_refuses_a_month_that_has_not_ended(cli):
    code, out, err = cli("bills", "generate", "2999-01")
    assert code == 1 and "January 2999 has not ended yet" in err
    code, out, err = cli("bills", "generate", "2026-13")
    assert code == 1 and err == "error: month must be between 1 and 12, not 13\n"
    code, out, err = cli("bills", "generate", "last")
    assert code == 1 and "write it as YYYY-MM" in err


def test_seed_then_generate_last_month(cli, db):
    code, out, err = cli("seed")
    assert code == 0, err
    assert "Seeded 4 accounts" in out
    with db() as session:
        statuses = {bill.status for bill in session.scalars(select(Bill))}
    assert statuses == set(BillStatus)

    code, out, _ = cli("bills", "generate")
    first = out.splitlines()[0]
    assert re.fullmatch(r"\w+ \d{4}: 6 bills created, total [\d,]+\.\d\d", first), first
    assert "first three months 1" in out and "not under contract 1" in out

    code, out, err = cli("seed")
    assert code == 0 and "already in place" in out


def test_bills_show_prints_the_history(cli):
    cli("seed")
    code, out, _ = cli("bills", "list", "--status", "SENT")
    first_sent = re.search(r"#(\d+)", out)[1]
    code, out, _ = cli("bills", "show", first_sent)
    assert code == 0
    history = out.split("History:")[1].splitlines()[1:]
    assert [line.split()[5] for line in history] == ["DRAFT", "APPROVE", "APPROVE", "SEND"]
    assert "fiona" in history[0] and "carol" in history[1] and "sam" in history[2] and "fiona" in history[3]
    assert "— → DRAFT" in history[0] and "FINAL → SENT" in history[3]


def test_bills_show_says_what_an_undo_reverted(cli):
    cli("seed")
    hooli = _latest(cli, "DRAFT", "Hooli Search")  # September's: approved by carol, then undone by her
    out = cli("bills", "show", hooli)[1]
    approve, undo = [line for line in out.splitlines() if " APPROVE " in line or " UNDO " in line]
    approve_id = approve.split()[0]
    assert f"undid action {approve_id}" in undo and "Approved the wrong bill" in undo

    assert cli("bills", "show", "999999")[2] == "error: there is no bill #999999\n"
    assert cli("bills", "list", "--status", "PAID")[2].startswith("error: unknown status 'PAID'")


def test_python_main_runs_as_a_script():
    result = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "bills" in result.stdout and "users" in result.stdout


def _latest(cli, status: str, customer: str) -> str:
    """The number of the customer's most recent bill in that status (lists run oldest first)."""
    out = cli("bills", "list", "--status", status)[1]
    return [re.search(r"#(\d+)", line)[1] for line in out.splitlines() if customer in line][-1]


def test_operators_act_on_bills_as_a_named_account(cli, cli_env):
    cli("seed")
    cli("bills", "generate")
    hooli = _latest(cli, "DRAFT", "Hooli Search")  # last month's one-step bill, nobody acted yet

    code, out, err = cli("bills", "approve", hooli, "--as", "sam")
    assert (code, err) == (0, "")
    assert out.startswith(f"Bill #{hooli} (Hooli Search) is now FINAL.")
    assert "sam" in out and "APPROVE  DRAFT → FINAL" in out

    code, out, err = cli("bills", "undo", hooli, "--as", "sam", "--reason", "clicked too soon")
    assert code == 0 and "is now DRAFT" in out and "clicked too soon" in out

    code, out, err = cli("bills", "edit", hooli, "--as", "fiona", "--unit-cost", "0.08")
    assert code == 0 and "0.10" in out and "0.08" in out
    cli("bills", "approve", hooli, "--as", "carol")

    code, out, err = cli("bills", "send", hooli, "--as", "fiona")
    assert code == 0 and "is now SENT" in out
    emails = list((cli_env / "mail").glob(f"bill-{hooli}-*.eml"))
    assert len(emails) == 1 and "4,000.00" in emails[0].read_text()

    code, out, err = cli("bills", "undo", hooli, "--as", "fiona")
    assert code == 1 and out == "" and err.count("\n") == 1 and "a sent bill cannot be undone" in err


def test_a_send_that_was_not_confirmed_is_shown_and_sent_again_only_with_again(cli, cli_env, db):
    cli("seed")
    cli("bills", "generate")
    hooli = _latest(cli, "DRAFT", "Hooli Search")
    cli("bills", "approve", hooli, "--as", "sam")
    with db() as session, session.begin():  # what a send killed while the mail server had the email leaves
        fiona = session.scalar(select(User).where(User.name == "fiona"))
        bill = session.get(Bill, int(hooli))
        bill.sending_started_at, bill.sending_by = datetime.now(timezone.utc) - timedelta(minutes=10), fiona

    out = cli("bills", "show", hooli)[1]
    assert f"Sending:         Sending of bill #{hooli} is uncertain: fiona started emailing it at " in out
    assert f"`billprocess bills send {hooli} --as NAME --again`" in out

    code, out, err = cli("bills", "send", hooli, "--as", "fiona")
    assert (code, out) == (1, "") and err.count("\n") == 1 and "The customer may have received it" in err
    assert list((cli_env / "mail").glob(f"bill-{hooli}-*.eml")) == []

    code, out, err = cli("bills", "send", hooli, "--as", "fiona", "--again")
    assert code == 0 and "is now SENT" in out
    [sent] = (cli_env / "mail").glob(f"bill-{hooli}-*.eml")
    assert f"Message-ID: <bill-{hooli}@" in sent.read_text()
    assert "Sending:" not in cli("bills", "show", hooli)[1]


def test_a_send_that_was_not_confirmed_is_recorded_as_sent_without_an_email_with_delivered(cli, cli_env, db, capsys):
    cli("seed")
    cli("bills", "generate")
    hooli = _latest(cli, "DRAFT", "Hooli Search")
    cli("bills", "approve", hooli, "--as", "sam")

    code, out, err = cli("bills", "send", hooli, "--as", "fiona", "--delivered")
    assert (code, out, err) == (1, "", f"error: Bill #{hooli} has no interrupted send to confirm\n")
    started = datetime.now(timezone.utc) - timedelta(minutes=10)
    with db() as session, session.begin():  # what a send killed while the mail server had the email leaves
        fiona = session.scalar(select(User).where(User.name == "fiona"))
        bill = session.get(Bill, int(hooli))
        bill.sending_started_at, bill.sending_by = started, fiona
    assert f"`billprocess bills send {hooli} --as NAME --delivered`" in cli("bills", "show", hooli)[1]

    with pytest.raises(SystemExit) as exited:
        cli("bills", "send", hooli, "--as", "fiona", "--again", "--delivered")
    assert exited.value.code == 2
    assert "error: argument --delivered: not allowed with argument --again" in capsys.readouterr().err
    code, out, err = cli("bills", "send", hooli, "--as", "sam", "--delivered")
    assert (code, out, err) == (1, "", "error: Only Finance can mark a bill as sent\n")

    code, out, err = cli("bills", "send", hooli, "--as", "fiona", "--delivered")

    assert code == 0 and err == "" and f"Bill #{hooli} (Hooli Search) is now SENT." in out
    assert (f"SEND     FINAL → SENT  confirmed delivered to billing@hooli.example.com without emailing it again;"
            f" the interrupted send was started by fiona at {timestamp(started)}") in out
    assert list((cli_env / "mail").glob(f"bill-{hooli}-*.eml")) == []
    shown = cli("bills", "show", hooli)[1]
    assert "Status:          SENT" in shown and "Sending:" not in shown


def test_operator_refusals_are_one_line_and_change_nothing(cli):
    cli("seed")
    cli("bills", "generate")
    acme = _latest(cli, "DRAFT", "Acme Analytics")  # two-step: carol first
    before = cli("bills", "show", acme)[1]

    for argv, message in [
        (["bills", "approve", acme, "--as", "sam"], "waiting for carol"),
        (["bills", "approve", acme, "--as", "casey"], "carol"),
        (["bills", "approve", acme, "--as", "fiona"], "Only Customer Success and Sales can approve bills"),
        (["bills", "send", acme, "--as", "fiona"], "DRAFT"),
        (["bills", "reject", acme, "--as", "sam", "--reason", "   "], "reason"),
        (["bills", "edit", acme, "--as", "sam", "--unit-cost", "0.5"], "Finance"),
        (["bills", "edit", acme, "--as", "fiona", "--unit-cost", "cheap"], "cheap"),
        (["bills", "approve", acme, "--as", "nobody"], "no account named 'nobody'"),
        (["bills", "approve", "abc", "--as", "sam"], "'abc' is not a bill number"),
    ]:
        code, out, err = cli(*argv)
        assert code == 1 and out == "", argv
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (argv, err)
    assert cli("bills", "show", acme)[1] == before


def test_a_database_from_a_newer_release_is_named_as_such(monkeypatch, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    run(capsys, "db", "upgrade")
    with sqlite3.connect(tmp_path / "newer.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00d'")
    code, out, err = run(capsys, "bills", "list")
    assert (code, out) == (1, "")
    assert err == "error: the database was migrated by a newer release of BillProcess (revision f00d)\n"


def test_generate_commits_and_says_what_is_queued_without_waiting_on_slack(cli, db, monkeypatch):
    from sandbox.slack import TOKEN, FakeSlack

    assert cli("seed")[0] == 0
    with FakeSlack() as fake:
        fake.hang("chat.postMessage")  # were the command to post, it would wait on this
        monkeypatch.setenv("SLACK_API_URL", fake.url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("BILLS_CHANNEL", "C0BILLS01")
        code, out, err = cli("bills", "generate")
        assert code == 0, err
        assert fake.methods_called() == []  # the command never talks to Slack: the workers do
        fake.clear_faults()
    with db() as session:
        queued = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.status == OutboxStatus.PENDING))
        created = session.scalar(select(func.count()).select_from(Bill).where(Bill.slack_ts.is_(None)))
    assert f"{queued} messages queued for Slack." in out
    assert queued >= created + 1  # every bill's message and the month's summary, at least
