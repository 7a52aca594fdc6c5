"""The command line, run in-process against the test database as an operator would type it."""

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import func, select

import main
from bot.accounts import secret_matches
from bot.formatting import timestamp
from db.models import Bill, BillStatus, Customer, LinkCode, Outbox, OutboxStatus, User

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
    (tmp_path / "empty.db").touch()  # a database file without the schema
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    code, out, err = run(capsys, "bills", "list")
    assert code == 1
    assert err == "error: the database schema is missing or out of date; run `billprocess db upgrade` first\n"


@pytest.mark.parametrize(
    "argv",
    [["bills", "list"], ["users", "list"], ["customers", "list"], ["bills", "generate"], ["outbox"]],
)
def test_a_folder_without_a_database_says_so_and_creates_none(monkeypatch, tmp_path, capsys, argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == (
        "error: no database here (billprocess.db): run `billprocess db upgrade` to create it"
        " (or set DATABASE_URL to the database to use)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_seed_in_a_folder_without_a_database_creates_one(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("BCRYPT_ROUNDS", "4")
    code, out, err = run(capsys, "seed")
    assert (code, err) == (0, "")
    assert out.startswith("Created the database.\nSeeded 4 accounts")
    assert run(capsys, "customers", "list")[0] == 0


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
         "The account's email must be an email address such as billing@example.com, not 'nope'"),
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
    assert out.splitlines()[0] == "September 2026: 1 bill created, total $11.13"
    assert "1 customer skipped: within limit 1" in out
    assert re.search(r"2026-09\s+DRAFT\s+Acme\s+89,000 calls\s+\$11.13", out)

    code, out, _ = cli("bills", "generate", "2026-09")
    assert out.splitlines()[0] == "September 2026: 0 bills created"
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
    # Totals per currency, never added across currencies: the demo bills customers in euros and dollars.
    assert re.fullmatch(r"\w+ \d{4}: 6 bills created, total €[\d,]+\.\d\d \+ \$[\d,]+\.\d\d", first), first
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
        (["bills", "approve", acme, "--as", "fiona"], "Only Customer Success and Sales can approve bill #"),
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


# --- the approval policy -------------------------------------------------------------------------


POLICY = """\
auto_approve_below: 50.00
thresholds:
  - at_least: 10000.00
    by: finance
  - at_least: 50000.00
    by: sales
    approvers: 2
"""


def test_policy_show_prints_the_rules_in_force_from_the_default_file(cli, cli_env):
    code, out, _ = cli("policy", "show")
    assert code == 0 and "the default (no policy file)" in out and "below" not in out
    (cli_env / "approval-policy.yml").write_text(POLICY)
    code, out, _ = cli("policy", "show")
    assert code == 0
    assert "Approval policy: approval-policy.yml" in out
    assert "A bill below 50.00 (in its currency) is approved automatically when it is drafted" in out
    assert "Extra step 1: a bill of 10,000.00 or more (in its currency) also needs Finance." in out
    assert "Extra step 2: a bill of 50,000.00 or more (in its currency) also needs 2 different people from Sales." in out


def test_policy_check_validates_a_file_without_using_it(cli, cli_env):
    (cli_env / "ok.yml").write_text(POLICY)
    (cli_env / "bad.yml").write_text("thresholds:\n  - at_least: 10\n    by: boss\n")
    code, out, _ = cli("policy", "check", "ok.yml")
    assert code == 0 and out.startswith("ok.yml: valid.\n")
    code, out, err = cli("policy", "check", "bad.yml")
    assert (code, out) == (1, "")
    assert err == "error: bad.yml: thresholds[0].by: 'boss' is neither a role (finance, customer_success, sales)" \
                  " nor a person (name:alice)\n"
    assert cli("policy", "check", "missing.yml")[2] == "error: missing.yml: no such file\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("auto_approve_below: [1]\n", "auto_approve_below: [1] is not an amount"),
        ("thresholds: [{at_least: 5, by: sales, approvers: 11}]\n", "thresholds[0].approvers: 11"),
        ("thresholds: [{at_least: 5, by: 'name:nobody'}]\n", "thresholds[0].by: no account is named 'nobody'"),
        ("auto_approve_below: 1\n  oops: [\n", "not valid YAML at line"),
    ],
)
def test_a_bad_policy_file_stops_the_program_with_one_line_naming_the_key(cli, cli_env, monkeypatch, text, message):
    (cli_env / "rules.yml").write_text(text)
    monkeypatch.setenv("APPROVAL_POLICY", "rules.yml")
    code, out, err = cli("policy", "show")
    assert (code, out) == (1, "")
    assert err.startswith("error: APPROVAL_POLICY ") and err.count("\n") == 1 and message in err, err


def test_a_named_policy_file_must_exist(cli, monkeypatch):
    monkeypatch.setenv("APPROVAL_POLICY", "nowhere.yml")
    assert cli("bills", "list")[2] == "error: APPROVAL_POLICY nowhere.yml: no such file\n"


def test_users_away_and_back(cli, session):
    from tests.factories import add_user

    add_user(session, "carol", "customer_success")
    add_user(session, "oscar", "customer_success")
    code, out, err = cli("users", "away", "carol", "--until", "2999-12-12", "--delegate", "oscar")
    assert (code, out, err) == (0, "carol is away until 2999-12-12; oscar approves the steps that name them.\n", "")
    with_user = session.scalar(select(User).where(User.name == "carol").execution_options(populate_existing=True))
    assert with_user.away_until.isoformat() == "2999-12-12" and with_user.delegate.name == "oscar"
    session.rollback()  # the command line writes next: hold no read transaction open
    assert cli("users", "away", "carol", "--until", "12/12/2999")[2] == (
        "error: '12/12/2999' is not a date; write it as YYYY-MM-DD, e.g. 2026-12-12\n"
    )
    assert cli("users", "back", "carol")[:2] == (0, "carol is back: the steps that name them wait for them again.\n")
    assert cli("users", "back", "carol")[2] == "error: carol is not away\n"


def test_policy_check_refuses_a_person_without_an_account(cli, cli_env, session):
    from tests.factories import add_user

    add_user(session, "fred", "finance")
    (cli_env / "named.yml").write_text("thresholds:\n  - at_least: 100\n    by: name:fred\n")
    (cli_env / "unknown.yml").write_text("thresholds:\n  - at_least: 100\n    by: name:alice\n")
    code, out, _ = cli("policy", "check", "named.yml")
    assert code == 0 and out.startswith("named.yml: valid.\n") and "a bill of 100.00 or more (in its currency) also needs fred" in out
    code, out, err = cli("policy", "check", "unknown.yml")
    assert (code, out, err) == (1, "", "error: unknown.yml: thresholds[0].by: no account is named 'alice'\n")
# --- managing accounts and customers without CSV files -------------------------------------------------


def test_invite_prints_the_command_to_type(cli):
    cli("users", "add", "carol", "--role", "customer_success", "--password-stdin", stdin="long enough\n")
    out = cli("users", "invite", "carol")[1]
    code = out.splitlines()[1]
    assert out.splitlines()[2] == f"They link their Slack user by typing: /bill link {code}"


@pytest.mark.parametrize("pressed", [KeyboardInterrupt, EOFError], ids=["ctrl-c", "ctrl-d"])
def test_leaving_the_password_prompt_is_one_line_and_changes_nothing(cli, db, monkeypatch, pressed):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)

    def prompt(text):
        raise pressed()

    monkeypatch.setattr(main.getpass, "getpass", prompt)
    code, out, err = cli("users", "add", "sam", "--role", "sales")
    assert (code, out) == (1, "")
    assert err == "\nerror: no password given; nothing was changed\n"
    with db() as session:
        assert session.scalar(select(User)) is None


def test_bills_generated_by_an_operator_say_so(cli):
    cli("seed")
    cli("bills", "generate")
    hooli = _latest(cli, "DRAFT", "Hooli Search")
    history = cli("bills", "show", hooli)[1].split("History:")[1].splitlines()[1:]
    assert history[0].split()[4:6] == ["operator", "DRAFT"]
    oldest = cli("bills", "list")[1].split()[0].removeprefix("#")
    assert "fiona        DRAFT" in cli("bills", "show", oldest)[1]  # seed generates its months as fiona


def test_customers_list_show_add_and_edit(cli):
    cli("users", "add", "carol", "--role", "customer_success", "--password-stdin", stdin="long enough\n")
    code, out, err = cli("customers", "add", "Pied Piper", "--email", "ap@piedpiper.example", "--address",
                         "5230 Newell Road", "--limit", "500000", "--unit-cost", "0.000125", "--start", "2026-01-01",
                         "--two-step", "--csm", "carol")
    assert (code, err) == (0, "")
    assert out == ("Added Pied Piper: limit 500,000 calls, $0.000125 per call over it, from 2026-01-01, two-step"
                   " approval, CSM carol.\n")

    code, out, err = cli("customers", "edit", "Pied Piper", "--limit", "750000", "--end", "2026-12-31", "--one-step",
                         "--csm", "")
    assert (code, err) == (0, "")
    assert out == ("Changed Pied Piper: limit 750,000 calls, $0.000125 per call over it, from 2026-01-01 to"
                   " 2026-12-31, one-step approval.\n")
    assert cli("customers", "list")[1].startswith("Pied Piper")
    shown = cli("customers", "show", "pied piper")[1]
    assert shown.startswith("Pied Piper: limit 750,000 calls") and "No bills yet." in shown


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["customers", "add", "X", "--email", "x@x.example"],
         "error: a new customer needs --address, --limit, --unit-cost, --start\n"),
        (["customers", "add", "X", "--email", "nope", "--address", "a", "--limit", "-1", "--unit-cost", "0.1",
          "--start", "2026-01-01"],
         ("error: --email must be an email address such as billing@example.com, not 'nope';"
          " --limit must be a whole number ≥ 0, not '-1'\n")),
        (["customers", "add", "X", "--email", "x@x.example", "--address", "a", "--limit", "1", "--unit-cost", "0.1",
          "--start", "2026-05-01", "--end", "2026-01-01"],
         "error: --end 2026-01-01 is before --start 2026-05-01\n"),
        (["customers", "add", "X", "--email", "x@x.example", "--address", "a", "--limit", "1", "--unit-cost", "0.1",
          "--start", "2026-05-01", "--csm", "fiona"],
         "error: --csm 'fiona' is a Finance user, not Customer Success\n"),
        (["customers", "edit", "Nobody", "--limit", "5"], "error: There is no customer named “Nobody”."),
        (["customers", "edit", "Acme"], "error: nothing to change: give at least one of"),
        (["usage", "list", "--customer", "Acme", "--year", "last"], "error: --year must be a year such as 2026"),
    ],
)
def test_customer_and_usage_refusals_are_one_line_and_change_nothing(cli, db, argv, message):
    cli("users", "add", "fiona", "--role", "finance", "--password-stdin", stdin="long enough\n")
    cli("customers", "add", "Acme", "--email", "a@acme.example", "--address", "1 Main St", "--limit", "10",
        "--unit-cost", "0.5", "--start", "2026-01-01")
    code, out, err = cli(*argv)
    assert (code, out) == (1, "")
    assert err.startswith(message) and err.count("\n") == 1
    with db() as session:
        assert [c.name for c in session.scalars(select(Customer))] == ["Acme"]
        assert session.scalar(select(Customer.monthly_api_limit)) == 10


def test_usage_list(cli):
    cli("seed")
    code, out, _ = cli("usage", "list", "--customer", "Acme Analytics", "--year", "2026")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Acme Analytics: API calls in 2026 (limit 1,000,000; * over it)"
    assert len(lines) == 13 and lines[-1].split() == ["2026-12", "not", "recorded"]
    assert any(line.endswith("*") for line in lines[1:])


def test_rename_and_set_role(cli, db):
    cli("seed")
    assert cli("users", "rename", "sam", "samantha")[1] == "Renamed sam to samantha.\n"
    assert cli("users", "rename", "samantha", "fiona")[2] == "error: an account named fiona already exists\n"

    code, out, err = cli("users", "set-role", "carol", "sales")
    assert (code, out) == (1, "")
    assert err.startswith("error: changing carol's role to Sales affects more than the account: carol is the CSM of"
                          " Acme Analytics, Globex Logistics, Tyrell Robotics, Wayne Media: as Sales, carol no longer"
                          " approves their bills for Customer Success, any Customer Success user does")
    assert err.endswith("Nothing was changed; add --force to change it anyway\n")
    code, out, err = cli("users", "set-role", "carol", "sales", "--force")
    assert code == 0 and out.startswith("carol is Sales now (was Customer Success).\n  carol is the CSM of")
    assert cli("users", "set-role", "casey", "finance")[0] == 1  # the CSM of other customers
    code, out, err = cli("users", "set-role", "fiona", "sales")
    assert code == 1 and "fiona is the only active Finance account" in err
    history = cli("bills", "show", _latest(cli, "SENT", "Acme Analytics"))[1]
    assert "samantha" in history  # the history names the account by its new name


def test_a_deactivated_account_cannot_act_and_its_history_stays(cli, db):
    cli("seed")
    cli("users", "link", "sam", "U0SAM0001")
    cli("bills", "generate")
    hooli = _latest(cli, "DRAFT", "Hooli Search")

    code, out, err = cli("users", "deactivate", "sam")
    assert (code, err) == (0, "")
    assert out == "Deactivated sam: unlinked from Slack user U0SAM0001, 0 API sessions ended; its history stays.\n"

    code, out, err = cli("bills", "approve", hooli, "--as", "sam")
    assert (code, out) == (1, "")
    assert err == ("error: sam's account is deactivated; an operator can reactivate it"
                   " (`billprocess users reactivate sam`)\n")
    assert cli("users", "invite", "sam")[2].startswith("error: sam's account is deactivated")
    assert re.search(r"sam\s+Sales\s+sam@example.com\s+deactivated", cli("users", "list")[1])
    globex = cli("bills", "show", _latest(cli, "SENT", "Globex Logistics"))[1]
    assert " sam " in globex and "APPROVE" in globex

    assert cli("users", "reactivate", "sam")[1].startswith("Reactivated sam.")
    assert cli("bills", "approve", hooli, "--as", "sam")[0] == 0


def test_deactivating_a_csm_says_who_approves_instead(cli):
    cli("seed")
    out = cli("users", "deactivate", "casey")[1]
    assert (
        "casey is the CSM of Cyberdyne Cloud, Initech Payments, Soylent Foods, Umbrella Health: once"
        " deactivated, casey no longer approves their bills for Customer Success"
    ) in out
    assert "Initech Payments" in cli("customers", "list")[1]
    assert "CSM casey (deactivated)" in cli("customers", "list")[1]


def test_reset_password_asks_for_the_new_one(cli, db):
    cli("users", "add", "sam", "--role", "sales", "--password-stdin", stdin="first password\n")
    code, out, err = cli("users", "reset-password", "sam", "--password-stdin", stdin="second password\n")
    assert (code, out, err) == (0, "Set a new password for sam; 0 API sessions ended.\n", "")
    with db() as session:
        assert secret_matches("second password", session.scalar(select(User.password_digest)))
    assert cli("users", "reset-password", "nobody", "--password-stdin", stdin="x\n")[2] == (
        "error: no account named 'nobody'\n")


def test_ctrl_c_at_a_real_terminals_password_prompt(cli_env):
    """As a person at a terminal: Ctrl-C at the prompt ends the command with one line, no traceback."""
    import fcntl
    import os
    import select as waiting
    import termios
    import time

    controller, terminal = os.openpty()

    def take_the_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # getpass reads /dev/tty, where Ctrl-C becomes SIGINT

    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "users", "add", "zed", "--role", "sales"],
        stdin=terminal, stdout=terminal, stderr=terminal, cwd=cli_env, start_new_session=True,
        preexec_fn=take_the_terminal,  # noqa: PLW1509 - one ioctl between fork and exec, as a terminal needs
    )
    os.close(terminal)
    seen = b""

    def read_until(found, deadline):
        nonlocal seen
        while not found(seen) and time.monotonic() < deadline:
            if waiting.select([controller], [], [], 0.1)[0]:
                try:
                    chunk = os.read(controller, 1024)
                except OSError:  # the other side closed: the command ended
                    return
                if not chunk:
                    return
                seen += chunk

    try:
        read_until(lambda text: b"Password:" in text, time.monotonic() + 20)
        assert b"Password:" in seen, seen
        os.write(controller, b"\x03")
        read_until(lambda text: b"nothing was changed" in text, time.monotonic() + 20)
        assert process.wait(timeout=20) == 1
    finally:
        process.kill()
        os.close(controller)
    assert b"error: no password given; nothing was changed" in seen
    assert b"Traceback" not in seen
# --- currencies, invoices, credit notes and usage corrections -------------------------------------


CUSTOMERS_WITH_CURRENCY = (
    "name,billing_address,billing_email,monthly_api_limit,overage_unit_cost,start_date,end_date,"
    "require_csm_approval,csm,currency\n"
    "Acme,1 Main St,billing@acme.example,1000,0.01,2024-01-01,,false,,\n"
    "Kanto,3 Chome,billing@kanto.example,1000,0.5,2024-01-01,,false,,jpy\n"
    "Gulf,4 Corniche,billing@gulf.example,1000,0.0015,2024-01-01,,false,,KWD\n"
)


def test_customers_have_currencies_and_each_amount_is_shown_in_its_own(cli, cli_env):
    (cli_env / "customers.csv").write_text(CUSTOMERS_WITH_CURRENCY)
    (cli_env / "usage.csv").write_text(
        "customer,year,month,api_usage\nAcme,2026,9,1500\nKanto,2026,9,1003\nGulf,2026,9,2001\n"
    )
    assert cli("customers", "import", "customers.csv")[:2] == (0, "3 customers created, 0 updated\n")
    cli("usage", "import", "usage.csv")

    code, out, _ = cli("bills", "generate", "2026-09")

    assert code == 0
    # ¥1.5 rounds half-up to ¥2, KWD 1.5015 to KWD 1.502; totals are never added across currencies.
    assert out.splitlines()[0] == "September 2026: 3 bills created, total ¥2 + KWD1.502 + $5.00"
    assert re.search(r"Kanto\s+3 calls\s+¥2\n", out) and re.search(r"Gulf\s+1,001 calls\s+KWD1.502\n", out)


def test_an_unknown_currency_is_a_row_error(cli, cli_env):
    (cli_env / "customers.csv").write_text(CUSTOMERS_WITH_CURRENCY.replace(",jpy\n", ",YEN\n"))
    code, out, err = cli("customers", "import", "customers.csv")
    assert (code, out) == (1, "")
    assert "row 3: currency 'YEN' is not an ISO 4217 currency code (e.g. USD, EUR, JPY)" in err
    assert cli("customers", "import", "customers.csv")[0] == 1


def sent_bill(cli, cli_env) -> str:
    """Import, generate, approve and send one bill of September 2026; returns its id."""
    cli("users", "add", "fiona", "--role", "finance", "--password-stdin", stdin="long enough\n")
    cli("users", "add", "sam", "--role", "sales", "--password-stdin", stdin="long enough\n")
    (cli_env / "customers.csv").write_text(CUSTOMERS_WITH_CURRENCY)
    (cli_env / "usage.csv").write_text("customer,year,month,api_usage\nAcme,2026,9,3000\n")
    cli("customers", "import", "customers.csv")
    cli("usage", "import", "usage.csv")
    cli("bills", "generate", "2026-09")
    bill_id = listed_ids(cli)[0]
    cli("bills", "approve", bill_id, "--as", "sam")
    assert cli("bills", "send", bill_id, "--as", "fiona")[0] == 0
    return bill_id


def listed_ids(cli) -> list[str]:
    """The numbers of the bills `bills list` shows, in its order."""
    return re.findall(r"^#(\d+)", cli("bills", "list")[1], re.MULTILINE)


def test_bills_pdf_writes_the_invoice_and_refuses_a_bill_without_one(cli, cli_env):
    bill_id = sent_bill(cli, cli_env)
    year = datetime.now(timezone.utc).year

    code, out, _ = cli("bills", "pdf", bill_id)
    assert (code, out) == (0, f"Wrote the invoice BP-{year}-000001 of bill #{bill_id} to BP-{year}-000001.pdf.\n")
    text = pypdf.PdfReader(cli_env / f"BP-{year}-000001.pdf").pages[0].extract_text()
    assert f"BP-{year}-000001" in text and "$20.00" in text and "1 Main St" in text

    assert cli("bills", "pdf", bill_id, "-o", "copy.pdf")[0] == 0
    assert (cli_env / "copy.pdf").read_bytes().startswith(b"%PDF-")
    code, out, err = cli("bills", "pdf", bill_id, "-o", str(cli_env))
    assert (code, err) == (1, f"error: {cli_env} is a folder; give a file name with -o\n")

    (cli_env / "usage.csv").write_text("customer,year,month,api_usage\nKanto,2026,9,1003\n")
    cli("usage", "import", "usage.csv")
    cli("bills", "generate", "2026-09")
    draft = listed_ids(cli)[1]
    code, _, err = cli("bills", "pdf", draft)
    assert (code, err) == (
        1, f"error: Bill #{draft} has no invoice yet: a bill gets its invoice number when it is first sent\n"
    )


def test_resend_and_credit_from_the_command_line(cli, cli_env):
    bill_id = sent_bill(cli, cli_env)
    year = datetime.now(timezone.utc).year

    code, out, _ = cli("bills", "resend", bill_id, "--as", "fiona", "--to", "ap@acme.example")
    assert code == 0 and f"RESEND   SENT → SENT  invoice BP-{year}-000001 emailed again to ap@acme.example" in out

    code, out, _ = cli("bills", "credit", bill_id, "--as", "fiona", "--amount", "5", "--reason", "Outage credit")
    assert out == (
        f"Credit note CN-{year}-000001 for $5.00 issued against invoice BP-{year}-000001 (bill #{bill_id}).\n"
        "  emailed to billing@acme.example\n"
    )
    code, _, err = cli("bills", "credit", bill_id, "--as", "fiona", "--amount", "15.01", "--reason", "too much")
    assert code == 1 and err.startswith("error: A credit note cannot exceed what is left of invoice")
    code, _, err = cli("bills", "credit", bill_id, "--as", "sam", "--amount", "1", "--reason", "x")
    assert (code, err) == (1, "error: Only Finance can credit bills\n")

    code, out, _ = cli("bills", "show", bill_id)
    assert f"Credit note:     CN-{year}-000001 of " in out and ": $5.00 (Outage credit)" in out
    assert f"Invoice:         BP-{year}-000001, issued " in out


def test_a_usage_import_reports_what_it_did_to_billed_months(cli, cli_env):
    bill_id = sent_bill(cli, cli_env)
    (cli_env / "usage.csv").write_text(
        "customer,year,month,api_usage\nAcme,2026,9,2000\nKanto,2026,9,1003\n"
    )
    code, out, _ = cli("usage", "import", "usage.csv")
    year = datetime.now(timezone.utc).year
    assert code == 0
    assert out.splitlines() == [
        "1 usage row created, 1 updated",
        "Billed months: 0 bills recomputed, 1 created, 0 written off left as they are, 1 sent bill flagged",
        f"  bill BP-{year}-000001 was sent: issue a credit note (the corrected amount is $10.00 less)",
        "  September 2026: 1 new bill for the corrected usage",
    ]
    assert cli("bills", "show", bill_id)[1].count("NOTE") == 1


def test_customers_take_a_currency_on_the_command_line(cli):
    code, out, err = cli("customers", "add", "Zeta GmbH", "--email", "ap@zeta.example", "--address", "1 Ring",
                         "--limit", "1000", "--unit-cost", "0.5", "--start", "2026-01-01", "--currency", "EUR")
    assert (code, err) == (0, "") and "€0.50 per call" in out
    code, out, _ = cli("customers", "edit", "Zeta GmbH", "--currency", "JPY")
    assert code == 0 and "¥0.5 per call" in out
    assert cli("customers", "edit", "Zeta GmbH", "--currency", "ABC")[2].startswith("error: ")


def test_renaming_someone_the_approval_policy_names_asks_for_force(cli, cli_env, session):
    from tests.factories import add_user

    add_user(session, "fred", "finance")
    (cli_env / "approval-policy.yml").write_text("thresholds:\n  - at_least: 100\n    by: name:fred\n")
    code, out, err = cli("users", "rename", "fred", "frederick")
    assert (code, out) == (1, "") and "the approval policy names fred" in err and "--force" in err
    assert cli("users", "rename", "fred", "frederick", "--force")[:2] == (0, "Renamed fred to frederick.\n")
