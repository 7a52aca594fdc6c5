"""Invoices and credit notes as PDF files (fpdf2), on A4 or Letter paper (PAPER_SIZE).

The text is set in DejaVu Sans, which matplotlib (already a dependency) ships, so that names and
addresses in any Latin, Greek or Cyrillic script, and every currency symbol, come out as written.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.fonts import FontFace

from bot.errors import InvalidTransition
from bot.invoices import Document, invoice_document
from db.models import Bill

FONT = "DejaVu"
MARGIN = 18  # mm
INK = (29, 28, 29)
MUTED = (97, 96, 97)
RULE = (221, 221, 221)
SHADE = (244, 244, 244)


@cache
def _font_files() -> tuple[Path, Path]:
    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return fonts / "DejaVuSans.ttf", fonts / "DejaVuSans-Bold.ttf"


def invoice_pdf(bill: Bill, *, paper_size: str = "A4") -> tuple[str, bytes]:
    """The bill's invoice as a PDF and its file name; refused for a bill that has no invoice yet."""
    if bill.invoice_number is None:
        raise InvalidTransition(
            f"Bill #{bill.id} has no invoice yet: a bill gets its invoice number when it is first sent"
        )
    document = invoice_document(bill)
    return document.filename, document_pdf(document, paper_size=paper_size)


def document_pdf(document: Document, *, paper_size: str = "A4") -> bytes:
    """The document as a one-page (or longer) PDF."""
    pdf = FPDF(orientation="portrait", unit="mm", format=paper_size.lower())
    regular, bold = _font_files()
    pdf.add_font(FONT, "", str(regular))
    pdf.add_font(FONT, "B", str(bold))
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(True, margin=MARGIN + 6)
    pdf.set_title(document.title)
    pdf.set_subject(f"{document.kind} {document.number}")
    pdf.set_author(document.issuer.get("name") or "")
    pdf.set_creator("BillProcess")
    pdf.set_text_color(*INK)
    pdf.add_page()
    width = pdf.epw

    # The issuer, left; the document's kind, number and dates, right.
    top = pdf.get_y()
    half = width / 2
    _party(pdf, document.issuer, width=half, heading=None, large=True)
    left_bottom = pdf.get_y()
    pdf.set_xy(MARGIN + half, top)
    pdf.set_font(FONT, "B", 20)
    pdf.cell(half, 10, document.kind.upper(), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(MARGIN + half)
    pdf.set_font(FONT, "B", 11)
    pdf.cell(half, 6, document.number, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 9.5)
    for label, value in document.dates:
        pdf.set_x(MARGIN + half)
        pdf.set_text_color(*MUTED)
        pdf.cell(half / 2, 5.5, label, align="R")
        pdf.set_text_color(*INK)
        pdf.cell(half / 2, 5.5, value, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(left_bottom, pdf.get_y()) + 8)

    _party(pdf, document.bill_to, width=width, heading="Bill to")
    pdf.ln(8)

    # The lines and the total.
    pdf.set_font(FONT, "", 9.5)
    pdf.set_draw_color(*RULE)
    heading = FontFace(emphasis="BOLD", fill_color=SHADE)
    with pdf.table(
        col_widths=(52, 16, 16, 16),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        headings_style=heading,
        borders_layout="HORIZONTAL_LINES",
        line_height=6,
        padding=2,
    ) as table:
        table.row(["Description", "Quantity", "Unit price", "Amount"])
        for line in document.lines:
            table.row([line.description, line.quantity, line.unit_price, line.amount])
    pdf.ln(3)
    pdf.set_font(FONT, "B", 12)
    pdf.cell(width * 0.68, 9, document.total_label, align="R")
    pdf.cell(width * 0.32, 9, document.total, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)

    pdf.set_font(FONT, "", 9.5)
    for note in document.notes:
        pdf.multi_cell(width, 5.5, note, new_x="LMARGIN", new_y="NEXT")
    _footer(pdf, document)
    return bytes(pdf.output())


def _party(pdf: FPDF, party: dict, *, width: float, heading: str | None, large: bool = False) -> None:
    """A name, its address lines, tax ID and email, one under the other."""
    if heading:
        pdf.set_font(FONT, "B", 8.5)
        pdf.set_text_color(*MUTED)
        pdf.cell(width, 5, heading.upper(), new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(*INK)
    name = party.get("name") or ""
    if name:
        pdf.set_font(FONT, "B", 13 if large else 10.5)
        pdf.multi_cell(width, 7 if large else 5.5, name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 9.5)
    lines = list(party.get("address") or [])
    if party.get("tax_id"):
        lines.append(f"Tax ID: {party['tax_id']}")
    if party.get("email"):
        lines.append(party["email"])
    for line in lines:
        pdf.multi_cell(width, 5, line, new_x="LMARGIN", new_y="NEXT")


def _footer(pdf: FPDF, document: Document) -> None:
    issuer = document.issuer
    parts = [issuer.get("name"), f"Tax ID {issuer['tax_id']}" if issuer.get("tax_id") else None, document.title]
    pdf.set_auto_page_break(False)  # the footer sits in the bottom margin
    pdf.set_y(-MARGIN - 2)
    pdf.set_font(FONT, "", 8)
    pdf.set_text_color(*MUTED)
    pdf.cell(pdf.epw, 5, " · ".join(part for part in parts if part), align="C")
