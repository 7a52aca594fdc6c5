"""Customer and usage CSV imports: good files are stored exactly, a bad file is rejected whole."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select

from bot.errors import InvalidInput
from bot.imports import ImportRejected, ImportSummary, import_customers, import_usage
from db.models import Customer, Role, Usage, User
from tests.factories import add_customer, add_user

CUSTOMER_HEADER = [
    "name",
    "billing_address",
    "billing_email",
    "monthly_api_limit",
    "overage_unit_cost",
    "start_date",
    "end_date",
    "require_csm_approval",
    "csm",
]
GOOD_CUSTOMER = {
    "name": "Acme",
    "billing_address": "1 Main Street, Springfield",
    "billing_email": "billing@acme.example",
    "monthly_api_limit": "1000",
    "overage_unit_cost": "0.000125",
    "start_date": "2024-01-01",
    "end_date": "",
    "require_csm_approval": "false",
    "csm": "",
}
USAGE_HEADER = ["customer", "year", "month", "api_usage"]


def customers_csv(*rows: dict[str, str]) -> str:
    """A customers file: each row is the good row with some values changed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CUSTOMER_HEADER)
    for changes in rows:
        row = {**GOOD_CUSTOMER, **changes}
        writer.writerow([row[column] for column in CUSTOMER_HEADER])
    return out.getvalue()


def usage_csv(*rows: tuple) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USAGE_HEADER)
    writer.writerows(rows)
    return out.getvalue()


def run(db, importer, text: str, source: str = "upload.csv") -> ImportSummary:
    with db() as session:
        return importer(session=session, file=io.StringIO(text), source=source)


def rejected(db, importer, text: str, source: str = "upload.csv") -> ImportRejected:
    with pytest.raises(ImportRejected) as caught:
        run(db, importer, text, source)
    return caught.value


def customers_by_name(db) -> dict[str, Customer]:
    with db() as session:
        return {customer.name: customer for customer in session.scalars(select(Customer))}


def usage_table(db) -> dict[tuple[str, int, int], int]:
    with db() as session:
        rows = session.execute(
            select(Customer.name, Usage.year, Usage.month, Usage.api_usage).join(Usage.customer)
        )
        return {(name, year, month): calls for name, year, month, calls in rows}


def database_contents(db) -> tuple:
    with db() as session:
        customers = session.execute(
            select(
                Customer.id, Customer.name, Customer.billing_address, Customer.billing_email,
                Customer.monthly_api_limit, Customer.overage_unit_cost, Customer.start_date,
                Customer.end_date, Customer.require_csm_approval, Customer.csm_id,
            ).order_by(Customer.id)
        ).all()
        usages = session.execute(
            select(Usage.id, Usage.customer_id, Usage.year, Usage.month, Usage.api_usage).order_by(Usage.id)
        ).all()
    return customers, usages


# --- customers: good files ----------------------------------------------------------------------


def test_customers_are_created_with_every_value_stored_exactly(db, session):
    csm = add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    text = customers_csv(
        {},
        {
            "name": "Globex Corporation",
            "billing_address": "Accounts Payable\n42 Elm Road, Shelbyville",
            "billing_email": "ap@globex.example",
            "monthly_api_limit": "0",
            "overage_unit_cost": "2.5",
            "start_date": "2025-03-15",
            "end_date": "2026-03-14",
            "require_csm_approval": "true",
            "csm": "carol",
        },
    )

    summary = run(db, import_customers, text)

    assert (summary.created, summary.updated) == (2, 0)
    customers = customers_by_name(db)
    acme = customers["Acme"]
    assert acme.billing_address == "1 Main Street, Springfield"
    assert acme.billing_email == "billing@acme.example"
    assert acme.monthly_api_limit == 1000
    assert isinstance(acme.overage_unit_cost, Decimal)
    assert acme.overage_unit_cost == Decimal("0.000125")
    assert str(acme.overage_unit_cost.normalize()) == "0.000125"
    assert acme.start_date == date(2024, 1, 1)
    assert acme.end_date is None
    assert acme.require_csm_approval is False
    assert acme.csm_id is None
    globex = customers["Globex Corporation"]
    assert globex.billing_address == "Accounts Payable\n42 Elm Road, Shelbyville"
    assert globex.monthly_api_limit == 0
    assert globex.overage_unit_cost == Decimal("2.5")
    assert (globex.start_date, globex.end_date) == (date(2025, 3, 15), date(2026, 3, 14))
    assert globex.require_csm_approval is True
    assert globex.csm_id == csm.id


def test_an_existing_customer_is_updated_and_counted_as_updated(db, session):
    csm = add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    add_customer(session, "Acme", limit=5, unit_cost="0.01", csm=csm, require_csm_approval=True)
    text = customers_csv(
        {"monthly_api_limit": "2000", "overage_unit_cost": "0.000001", "end_date": "2026-12-31"},
        {"name": "Initech"},
    )

    summary = run(db, import_customers, text)

    assert (summary.created, summary.updated) == (1, 1)
    assert summary.line("customers") == "1 customer created, 1 updated"
    customers = customers_by_name(db)
    assert set(customers) == {"Acme", "Initech"}
    acme = customers["Acme"]
    assert acme.monthly_api_limit == 2000
    assert acme.overage_unit_cost == Decimal("0.000001")
    assert acme.end_date == date(2026, 12, 31)
    # An empty csm in the file removes the customer's CSM, as every other value is replaced.
    assert acme.csm_id is None
    assert acme.require_csm_approval is False


def test_importing_the_same_customers_twice_updates_instead_of_duplicating(db):
    text = customers_csv({}, {"name": "Initech"})
    assert (run(db, import_customers, text).created, run(db, import_customers, text).updated) == (2, 2)
    assert sorted(customers_by_name(db)) == ["Acme", "Initech"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [("true", True), ("TRUE", True), ("Yes", True), ("1", True), ("false", False), ("No", False), ("0", False)],
)
def test_require_csm_approval_accepts_the_usual_words(db, word, expected):
    run(db, import_customers, customers_csv({"require_csm_approval": word}))
    assert customers_by_name(db)["Acme"].require_csm_approval is expected


def test_a_spreadsheet_export_with_bom_crlf_and_padded_header_is_accepted(db):
    header = " Name ,billing_address,BILLING_EMAIL,monthly_api_limit,overage_unit_cost,start_date,end_date,"
    header += "require_csm_approval,csm"
    text = "\ufeff" + header + "\r\n" + 'Acme,"1 Main Street, Springfield",billing@acme.example,10,0.5,2024-01-01,,no,\r\n'
    text += "\r\n,,,,,,,,\r\n"  # blank rows at the end, as spreadsheets leave them

    summary = run(db, import_customers, text)

    assert (summary.created, summary.updated) == (1, 0)
    assert customers_by_name(db)["Acme"].billing_address == "1 Main Street, Springfield"


def test_a_file_with_only_the_header_imports_nothing(db):
    assert run(db, import_customers, customers_csv()).line("customers") == "0 customers created, 0 updated"
    assert customers_by_name(db) == {}


# --- customers: bad rows ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": ""}, "row 3: name is empty"),
        ({"name": "x" * 201}, "row 3: name is longer than 200 characters"),
        ({"billing_address": "  "}, "row 3: billing_address is empty"),
        (
            {"billing_email": "acme.example"},
            "row 3: billing_email must be an email address such as billing@example.com, not 'acme.example'",
        ),
        (
            {"billing_email": "billing@acme"},
            "row 3: billing_email must be an email address such as billing@example.com, not 'billing@acme'",
        ),
        ({"monthly_api_limit": "-5"}, "row 3: monthly_api_limit must be a whole number ≥ 0, not '-5'"),
        ({"monthly_api_limit": "1.5"}, "row 3: monthly_api_limit must be a whole number ≥ 0, not '1.5'"),
        ({"monthly_api_limit": "1,000"}, "row 3: monthly_api_limit must be a whole number ≥ 0, not '1,000'"),
        ({"monthly_api_limit": ""}, "row 3: monthly_api_limit must be a whole number ≥ 0, not ''"),
        (
            {"monthly_api_limit": "1000000000001"},
            "row 3: monthly_api_limit '1000000000001' is too large; it can be at most 1,000,000,000,000",
        ),
        (
            {"overage_unit_cost": "0.0000125"},
            "row 3: overage_unit_cost '0.0000125' has more than 6 decimal places",
        ),
        (
            {"overage_unit_cost": "-0.01"},
            "row 3: overage_unit_cost cannot be negative",
        ),
        (
            {"overage_unit_cost": "$0.01"},
            "row 3: overage_unit_cost must be a decimal number such as 0.0125, not '$0.01'",
        ),
        (
            {"overage_unit_cost": "1e-3"},
            "row 3: overage_unit_cost must be a decimal number such as 0.0125, not '1e-3'",
        ),
        (
            {"overage_unit_cost": "NaN"},
            "row 3: overage_unit_cost must be a decimal number such as 0.0125, not 'NaN'",
        ),
        (
            {"overage_unit_cost": "1000.000001"},
            "row 3: overage_unit_cost '1000.000001' is too large; it can be at most 1,000 per call",
        ),
        (
            {"start_date": "01/02/2024"},
            "row 3: start_date must be a date written YYYY-MM-DD, not '01/02/2024'",
        ),
        ({"start_date": ""}, "row 3: start_date must be a date written YYYY-MM-DD, not ''"),
        ({"start_date": "2024-02-30"}, "row 3: start_date '2024-02-30' is not a real date"),
        ({"end_date": "2024-13-01"}, "row 3: end_date '2024-13-01' is not a real date"),
        ({"end_date": "2023-12-31"}, "row 3: end_date 2023-12-31 is before start_date 2024-01-01"),
        ({"require_csm_approval": "maybe"}, "row 3: require_csm_approval must be true or false, not 'maybe'"),
        ({"require_csm_approval": ""}, "row 3: require_csm_approval must be true or false, not ''"),
        ({"csm": "nobody"}, "row 3: csm 'nobody' is not a user"),
        ({"name": "Acme"}, "row 3: customer 'Acme' is already in row 2"),
        ({"name": "ACME"}, "row 3: customer 'ACME' is already in row 2"),
    ],
)
def test_a_bad_customer_row_is_reported_with_its_row_and_reason(db, changes, problem):
    text = customers_csv({}, {"name": "Initech", **changes})

    error = rejected(db, import_customers, text, source="customers.csv")

    assert error.problems == [problem]
    assert str(error).splitlines() == ["customers.csv rejected: 1 bad row, nothing imported", problem]
    assert isinstance(error, InvalidInput)
    assert customers_by_name(db) == {}


def test_a_row_with_the_wrong_number_of_values_is_reported(db):
    text = customers_csv({}) + "Initech,1 Main Street, Springfield,ap@initech.example,10,0.5,2024-01-01,,no,\n"

    error = rejected(db, import_customers, text)

    assert error.problems == [
        "row 3: there are 10 values but the header has 9 columns; "
        "a value that contains a comma must be in double quotes"
    ]


def test_every_bad_row_and_every_bad_value_is_reported_at_once(db):
    text = customers_csv(
        {"monthly_api_limit": "-5"},
        {"name": "Good"},
        {"name": "Bad email and date", "billing_email": "nope", "start_date": "2024-1-1"},
        {"name": "Good too"},
        {"name": "Bad flag", "require_csm_approval": "maybe"},
    )

    error = rejected(db, import_customers, text, source="customers.csv")

    assert error.summary == "customers.csv rejected: 3 bad rows, nothing imported"
    assert error.problems == [
        "row 2: monthly_api_limit must be a whole number ≥ 0, not '-5'",
        "row 4: billing_email must be an email address such as billing@example.com, not 'nope'",
        "row 4: start_date must be a date written YYYY-MM-DD, not '2024-1-1'",
        "row 6: require_csm_approval must be true or false, not 'maybe'",
    ]
    assert customers_by_name(db) == {}


def test_the_message_lists_the_first_problems_and_counts_the_rest(db):
    text = customers_csv(*({"name": f"Customer {n}", "monthly_api_limit": "x"} for n in range(60)))

    error = rejected(db, import_customers, text)

    assert len(error.problems) == 60
    lines = str(error).splitlines()
    assert lines[0] == "upload.csv rejected: 60 bad rows, nothing imported"
    assert lines[1] == "row 2: monthly_api_limit must be a whole number ≥ 0, not 'x'"
    assert lines[-1] == "… and 10 more"


def test_an_unknown_csm_is_rejected_with_a_hint_for_a_near_miss(db, session):
    add_user(session, "Carol", Role.CUSTOMER_SUCCESS)
    text = customers_csv({"csm": "carol"}, {"name": "Initech", "csm": "dave"})

    error = rejected(db, import_customers, text)

    assert error.problems == [
        "row 2: csm 'carol' is not a user (did you mean 'Carol'?)",
        "row 3: csm 'dave' is not a user",
    ]


@pytest.mark.parametrize(("role", "label"), [(Role.SALES, "Sales"), (Role.FINANCE, "Finance")])
def test_a_csm_who_is_not_customer_success_is_rejected(db, session, role, label):
    add_user(session, "sam", role)

    error = rejected(db, import_customers, customers_csv({"csm": "sam"}))

    assert error.problems == [f"row 2: csm 'sam' is a {label} user, not Customer Success"]
    assert customers_by_name(db) == {}


def test_a_name_differing_only_in_case_from_an_existing_customer_is_rejected(db, session):
    add_customer(session, "Acme")

    error = rejected(db, import_customers, customers_csv({"name": "ACME"}))

    assert error.problems == [
        "row 2: name 'ACME' differs only in upper and lower case from the existing customer 'Acme'; "
        "spell it the same way to update that customer"
    ]
    assert sorted(customers_by_name(db)) == ["Acme"]


def test_existing_customers_and_users_are_looked_up_in_bulk(db, session, engine):
    add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    for n in range(0, 100, 2):
        add_customer(session, f"Customer {n}")
    text = customers_csv(*({"name": f"Customer {n}", "csm": "carol"} for n in range(100)))
    selects = []

    def count_selects(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", count_selects)
    try:
        summary = run(db, import_customers, text)
    finally:
        event.remove(engine, "before_cursor_execute", count_selects)

    assert (summary.created, summary.updated) == (50, 50)
    # users, then customers (plus the import lock on PostgreSQL): never one query per row
    assert len(selects) <= 3, selects


def test_a_rejected_customers_file_changes_nothing(db, session):
    csm = add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    add_customer(session, "Acme", limit=5, unit_cost="0.01", csm=csm, usage={(2026, 1): 10})
    before = database_contents(db)
    text = customers_csv(
        {"monthly_api_limit": "999", "overage_unit_cost": "0.5"},  # a good update of Acme
        {"name": "Initech"},  # a good new customer
        {"name": "Broken", "overage_unit_cost": "cheap"},
    )

    rejected(db, import_customers, text)

    assert database_contents(db) == before


# --- customers and usage: files that cannot be read ------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (
            "name,billing_address,billing_email,monthly_api_limit,overage_unit_cost,start_date,end_date,"
            "require_csm_approval",
            "missing csm",
        ),
        (
            "name,billing_address,billing_email,monthly_api_limit,overage_unit_cost,start_date,end_date,"
            "require_csm_approval,cms",
            "missing csm; unexpected 'cms'",
        ),
        (
            "name,billing_address,billing_email,monthly_api_limit,overage_unit_cost,start_date,end_date,"
            "require_csm_approval,csm,notes",
            "unexpected 'notes'",
        ),
        (
            "billing_address,name,billing_email,monthly_api_limit,overage_unit_cost,start_date,end_date,"
            "require_csm_approval,csm",
            "the columns are in the wrong order",
        ),
        (
            "name,name,billing_email,monthly_api_limit,overage_unit_cost,start_date,end_date,"
            "require_csm_approval,csm",
            "missing billing_address; repeated name",
        ),
    ],
)
def test_a_bad_customers_header_says_what_is_wrong(db, header, reason):
    text = header + "\n" + customers_csv({}).split("\n", 1)[1]

    error = rejected(db, import_customers, text, source="customers.csv")

    assert error.summary == "customers.csv rejected: bad header row, nothing imported"
    assert error.problems == [f"row 1: the header must be {','.join(CUSTOMER_HEADER)}; {reason}"]
    assert customers_by_name(db) == {}


def test_a_usage_file_without_a_header_is_rejected(db, session):
    add_customer(session, "Acme")

    error = rejected(db, import_usage, "Acme,2026,10,1500\n")

    assert error.problems == [
        "row 1: the header must be customer,year,month,api_usage; "
        "missing customer, year, month, api_usage; unexpected 'Acme', '2026', '10', '1500'"
    ]
    assert usage_table(db) == {}


@pytest.mark.parametrize("text", ["", "\n\n", "  \r\n"])
@pytest.mark.parametrize("importer", [import_customers, import_usage])
def test_an_empty_file_is_rejected(db, importer, text):
    error = rejected(db, importer, text, source="empty.csv")

    assert error.summary == "empty.csv rejected: the file is empty, nothing imported"
    assert error.problems[0].startswith("the file is empty; its first row must be the header ")


PNG_BYTES = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cf"
    "c0f01f0005000201ff2f1bd80000000049454e44ae426082"
)


@pytest.mark.parametrize("importer", [import_customers, import_usage])
def test_an_image_is_rejected_as_not_csv(db, importer, tmp_path):
    path = tmp_path / "logo.png"
    path.write_bytes(PNG_BYTES)

    with pytest.raises(ImportRejected) as caught, open(path, encoding="utf-8", newline="") as file:
        with db() as session:
            importer(session=session, file=file, source="logo.png")

    assert caught.value.summary == "logo.png rejected: not CSV text, nothing imported"
    assert caught.value.problems == [
        "it is not UTF-8 text; save the spreadsheet as CSV (comma-separated, UTF-8) and import that file"
    ]


def test_binary_data_read_as_text_is_rejected_as_not_csv(db, session):
    add_customer(session, "Acme")
    text = usage_csv(("Acme", 2026, 1, 10)) + bytes(range(256)).decode("latin-1")

    error = rejected(db, import_usage, text, source="dump.bin")

    assert error.summary == "dump.bin rejected: not CSV text, nothing imported"
    assert error.problems[0].startswith("line 3 contains binary data")
    assert usage_table(db) == {}


def test_an_unclosed_quote_is_reported_with_its_row(db):
    text = customers_csv({}) + '"Initech,1 Main Street,ap@initech.example,10,0.5,2024-01-01,,no,\n'

    error = rejected(db, import_customers, text)

    assert error.summary == "upload.csv rejected: not valid CSV, nothing imported"
    assert error.problems == ["row 3: a quoted value is never closed"]
    assert customers_by_name(db) == {}


def test_a_stray_quote_is_reported_with_its_row(db, session):
    add_customer(session, "Acme")
    text = usage_csv(("Acme", 2026, 9, 100)) + '"Acme"s,2026,10,5\n'

    error = rejected(db, import_usage, text)

    assert error.problems == ['row 3: a quoted value must be followed by a comma; write a " inside one as ""']
    assert usage_table(db) == {}


# --- usage ----------------------------------------------------------------------------------------


def test_usage_is_recorded_per_customer_and_month(db, session):
    add_customer(session, "Acme")
    add_customer(session, "Globex")
    text = usage_csv(("Acme", 2026, 9, 0), ("Acme", 2026, 10, 1500), ("Globex", 2026, 10, 10**12))

    summary = run(db, import_usage, text)

    assert (summary.created, summary.updated) == (3, 0)
    assert summary.line("usage months") == "3 usage months created, 0 updated"
    assert usage_table(db) == {
        ("Acme", 2026, 9): 0,
        ("Acme", 2026, 10): 1500,
        ("Globex", 2026, 10): 10**12,
    }


def test_reimporting_a_month_replaces_its_usage(db, session):
    add_customer(session, "Acme", usage={(2026, 9): 700, (2026, 10): 1500})

    summary = run(db, import_usage, usage_csv(("Acme", 2026, 10, 2500), ("Acme", "2026", "11", 30)))

    assert (summary.created, summary.updated) == (1, 1)
    assert summary.line("usage month") == "1 usage month created, 1 updated"
    assert usage_table(db) == {("Acme", 2026, 9): 700, ("Acme", 2026, 10): 2500, ("Acme", 2026, 11): 30}
    with db() as check:
        assert len(check.scalars(select(Usage)).all()) == 3


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (("Globex", 2026, 10, 5), "row 3: customer 'Globex' does not exist; import it in a customers file first"),
        (
            ("acme", 2026, 10, 5),
            "row 3: customer 'acme' does not exist (did you mean 'Acme'?); import it in a customers file first",
        ),
        (("", 2026, 10, 5), "row 3: customer is empty"),
        (("Acme", 26, 10, 5), "row 3: year must be a 4-digit year such as 2026, not '26'"),
        (("Acme", "2026.0", 10, 5), "row 3: year must be a 4-digit year such as 2026, not '2026.0'"),
        (("Acme", 1800, 10, 5), "row 3: year 1800 is out of range; it must be 1900 or later"),
        (("Acme", 2026, 13, 5), "row 3: month must be a whole number from 1 to 12, not '13'"),
        (("Acme", 2026, 0, 5), "row 3: month must be a whole number from 1 to 12, not '0'"),
        (("Acme", 2026, "Oct", 5), "row 3: month must be a whole number from 1 to 12, not 'Oct'"),
        (("Acme", 2026, 10, -1), "row 3: api_usage must be a whole number ≥ 0, not '-1'"),
        (("Acme", 2026, 10, "12.5"), "row 3: api_usage must be a whole number ≥ 0, not '12.5'"),
        (("Acme", 2026, 10, ""), "row 3: api_usage must be a whole number ≥ 0, not ''"),
        (
            ("Acme", 2026, 10, 10**12 + 1),
            "row 3: api_usage '1000000000001' is too large; it can be at most 1,000,000,000,000",
        ),
        (
            ("Acme", 2026, 10, "9" * 5000),
            "row 3: api_usage '999999999999999999999999999999999999999…' is too large; "
            "it can be at most 1,000,000,000,000",
        ),
        (("Acme", 2026, 9, 5), "row 3: usage of 'Acme' for 2026-09 is already in row 2"),
        (("Acme", 2026, "09", 5), "row 3: usage of 'Acme' for 2026-09 is already in row 2"),
    ],
)
def test_a_bad_usage_row_is_reported_with_its_row_and_reason(db, session, row, problem):
    add_customer(session, "Acme")

    error = rejected(db, import_usage, usage_csv(("Acme", 2026, 9, 100), row), source="usage.csv")

    assert error.problems == [problem]
    assert error.summary == "usage.csv rejected: 1 bad row, nothing imported"
    assert usage_table(db) == {}


def test_usage_lookups_are_in_bulk(db, session, engine):
    for n in range(20):
        add_customer(session, f"Customer {n}", usage={(2026, 1): 1})
    text = usage_csv(*((f"Customer {n}", 2026, month, 5) for n in range(20) for month in (1, 2)))
    selects = []

    def count_selects(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", count_selects)
    try:
        summary = run(db, import_usage, text)
    finally:
        event.remove(engine, "before_cursor_execute", count_selects)

    assert (summary.created, summary.updated) == (20, 20)
    # customers, the usage already recorded, then the bills of the months corrected and which months have
    # bills (plus the month and import locks on PostgreSQL): never a lookup per row
    assert len(selects) <= 6, selects


def test_large_files_are_imported_completely(db):
    names = [f"Customer {n:04d}" for n in range(1000)]
    created = run(db, import_customers, customers_csv(*({"name": name} for name in names)))
    usage = usage_csv(*((name, 2026, month, n) for n, name in enumerate(names) for month in (1, 2)))

    first = run(db, import_usage, usage)
    again = run(db, import_usage, usage)

    assert created.created == 1000
    assert (first.created, first.updated) == (2000, 0)
    assert (again.created, again.updated) == (0, 2000)
    table = usage_table(db)
    assert len(table) == 2000
    assert table[("Customer 0999", 2026, 2)] == 999


def test_a_usage_row_with_the_wrong_number_of_values_is_reported(db, session):
    add_customer(session, "Acme")

    error = rejected(db, import_usage, usage_csv(("Acme", 2026, 9, 100)) + "Acme,2026,10\n")

    assert error.problems == ["row 3: there are 3 values but the header has 4 columns"]


def test_blank_rows_keep_the_row_numbers_of_a_spreadsheet(db, session):
    add_customer(session, "Acme")
    text = usage_csv(("Acme", 2026, 9, 100)) + "\n,,,\n" + "Acme,2026,10,lots\n"

    error = rejected(db, import_usage, text)

    assert error.problems == ["row 5: api_usage must be a whole number ≥ 0, not 'lots'"]


def test_a_rejected_usage_file_changes_nothing(db, session):
    add_customer(session, "Acme", usage={(2026, 9): 700})
    before = database_contents(db)
    text = usage_csv(
        ("Acme", 2026, 9, 999),  # a good replacement
        ("Acme", 2026, 10, 5),  # a good new month
        ("Initech", 2026, 10, 5),  # an unknown customer
    )

    error = rejected(db, import_usage, text)

    assert error.problems == [
        "row 4: customer 'Initech' does not exist; import it in a customers file first"
    ]
    assert database_contents(db) == before


# --- the summary line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "updated", "noun", "line"),
    [
        (3, 1, "customers", "3 customers created, 1 updated"),
        (1, 0, "customers", "1 customer created, 0 updated"),
        (1, 2, "customer", "1 customer created, 2 updated"),
        (0, 5, "customer", "0 customers created, 5 updated"),
    ],
)
def test_summary_line(created, updated, noun, line):
    assert ImportSummary(created=created, updated=updated).line(noun) == line


# --- files made at random ---------------------------------------------------------------------------

# Values a spreadsheet, a script or a person might put in any column; odd numbers get a branch of their own.
ODD_NUMBERS = ["0" * 5000, "9" * 5000, "1" * 4301, "0." + "0" * 5000, "²", "١٢", "-1", "1e5", "NaN", "0.0000001"]
ODD_VALUES = [
    "x" * 200_000, "\x00", "Infinity", "1000.0000001", "2024-02-30", "2024-13-01", "0000-01-01", "9999-12-31",
    "yes", "maybe", "", " ", "a,b", 'quote"d', "line\nbreak", "\r", "<!channel>", "carol", "Acme", "1900", "12", "13",
]
PROBLEM = re.compile(r"(row \d+: |line \d+ contains binary data; )")


def odd_or(good: str) -> st.SearchStrategy[str]:
    return st.just(good) | st.sampled_from(ODD_NUMBERS) | st.sampled_from(ODD_VALUES) | st.text(max_size=8)


def random_file(header: list[str], good: dict[str, str]) -> st.SearchStrategy[str]:
    """A CSV file with the right header, rows of good and odd values, and now and then a broken last line."""
    row = st.fixed_dictionaries({column: odd_or(value) for column, value in good.items()}).map(
        lambda values: [values[column] for column in header]
    )
    rows = st.lists(row | st.lists(st.sampled_from(ODD_VALUES), max_size=12), max_size=8)
    tail = st.sampled_from(["", '"never closed\n', 'a"b,"c"d\n', "\x00\n", "\ufeff\n"])

    def write(lines: list[list[str]], last: str) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *lines])
        return out.getvalue() + last

    return st.builds(write, rows, tail)


def check_import(db, importer, text: str) -> None:
    """Imported, or rejected whole: every problem names its row and reason, and nothing changed."""
    before = database_contents(db)
    try:
        run(db, importer, text)
    except ImportRejected as rejection:
        assert database_contents(db) == before
        assert rejection.problems and all(PROBLEM.match(problem) for problem in rejection.problems), rejection.problems
        assert all(len(problem) < 400 for problem in rejection.problems)


FUZZ_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ_SETTINGS
@given(text=random_file(CUSTOMER_HEADER, GOOD_CUSTOMER))
def test_a_customers_file_of_anything_is_imported_or_rejected_row_by_row(db, text):
    with db() as session:
        if session.scalar(select(User).where(User.name == "carol")) is None:
            add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    check_import(db, import_customers, text)


@FUZZ_SETTINGS
@given(text=random_file(USAGE_HEADER, {"customer": "Acme", "year": "2026", "month": "9", "api_usage": "700"}))
def test_a_usage_file_of_anything_is_imported_or_rejected_row_by_row(db, text):
    with db() as session:
        if session.scalar(select(Customer).where(Customer.name == "Acme")) is None:
            add_customer(session, "Acme")
    check_import(db, import_usage, text)
