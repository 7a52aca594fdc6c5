"""Render a sample invoice as the app makes it, and its first page as docs/invoice.png.

    .venv/bin/python docs/render_invoice.py

The invoice is built by the same code as a sent bill's (bot/invoices.py, bot/pdf.py), from a bill held in
memory; pypdfium2 (a dev dependency) draws the page.
"""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pypdfium2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.invoices import Issuer, bill_to, invoice_document  # noqa: E402
from bot.pdf import document_pdf  # noqa: E402
from db.models import Bill, BillStatus, Customer  # noqa: E402

HERE = Path(__file__).resolve().parent


def sample_bill() -> Bill:
    customer = Customer(
        name="Acme Analytics GmbH",
        billing_address="Accounts Payable\nFriedrichstraße 123\n10117 Berlin\nGermany",
        billing_email="ap@acme-analytics.example",
        monthly_api_limit=1_000_000,
        overage_unit_cost=Decimal("0.000125"),
        start_date=date(2025, 1, 1),
        require_csm_approval=True,
        currency="EUR",
    )
    issuer = Issuer(
        "Example Cloud Ltd", "2 Harbour Road\nDublin D02 XY45\nIreland", "IE1234567X", "billing@example-cloud.example"
    )
    return Bill(
        id=123,
        customer=customer,
        year=2026,
        month=10,
        api_usage=1_250_000,
        monthly_api_limit=1_000_000,
        overage_units=250_000,
        overage_unit_cost=Decimal("0.000125"),
        overage_amount=Decimal("31.25"),
        status=BillStatus.SENT,
        currency="EUR",
        invoice_number="BP-2026-000123",
        issue_date=date(2026, 11, 3),
        due_date=date(2026, 12, 3),
        issuer=issuer.as_stored(),
        bill_to=bill_to(customer),
    )


def main() -> None:
    pdf = document_pdf(invoice_document(sample_bill()), paper_size="A4")
    document = pypdfium2.PdfDocument(pdf)
    try:
        page = document[0]
        page.render(scale=1.5).to_pil().save(HERE / "invoice.png", optimize=True)
        page.close()
    finally:
        document.close()
    print(f"wrote {HERE / 'invoice.png'}")


if __name__ == "__main__":
    main()
