"""Public pages the emulator serves itself: hosted invoice page, invoice PDF, portal page."""

from __future__ import annotations

import html
import io
from typing import Any

from stripe_emulator import proration

Json = dict[str, Any]


def invoice_pdf(invoice: Json, account_name: str) -> bytes:
    """A real one-page PDF of the invoice (reportlab is imported here: it is slow to load)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    width, height = A4
    currency = str(invoice["currency"])
    y = height - 72
    pdf.setTitle(f"Invoice {invoice['number']}")
    pdf.setFont("Helvetica-Bold", 18)
    pdf.drawString(72, y, "Invoice")
    pdf.setFont("Helvetica", 10)
    y -= 24
    for label, value in (
        ("Invoice number", invoice["number"]),
        ("Date of issue", proration.format_day(int(invoice["created"]))),
        ("Status", invoice["status"]),
        ("Billed to", invoice["customer_email"] or invoice["customer_name"] or invoice["customer"]),
        ("From", account_name),
    ):
        pdf.drawString(72, y, f"{label}: {value}")
        y -= 14
    y -= 14
    pdf.setFont("Helvetica-Bold", 10)
    pdf.drawString(72, y, "Description")
    pdf.drawRightString(width - 72, y, "Amount")
    pdf.setFont("Helvetica", 10)
    for line in invoice["lines"]["data"]:
        y -= 16
        pdf.drawString(72, y, str(line["description"])[:90])
        pdf.drawRightString(width - 72, y, _money(int(line["amount"]), currency))
    y -= 28
    for label, amount in (
        ("Total", int(invoice["total"])),
        ("Amount paid", int(invoice["amount_paid"])),
        ("Amount due", int(invoice["amount_remaining"])),
    ):
        pdf.drawString(width - 260, y, label)
        pdf.drawRightString(width - 72, y, _money(amount, currency))
        y -= 14
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _money(amount: int, currency: str) -> str:
    # reportlab's base fonts lack the rupee sign, so amounts are written with the ISO code.
    return f"{amount / 100:,.2f} {currency.upper()}"


def invoice_page(invoice: Json, pdf_url: str) -> str:
    currency = str(invoice["currency"])
    rows = "".join(
        f"<tr><td>{html.escape(str(line['description']))}</td>"
        f"<td>{html.escape(proration.format_money(int(line['amount']), currency))}</td></tr>"
        for line in invoice["lines"]["data"]
    )
    total = proration.format_money(int(invoice["total"]), currency)
    due = proration.format_money(int(invoice["amount_remaining"]), currency)
    return f"""<!doctype html>
<html><head><meta charset="utf-8">
<title>Invoice {html.escape(str(invoice["number"]))}</title></head>
<body>
<h1>Invoice {html.escape(str(invoice["number"]))}</h1>
<p>Status: <strong>{html.escape(str(invoice["status"]))}</strong></p>
<table><tr><th>Description</th><th>Amount</th></tr>{rows}</table>
<p>Total: {html.escape(total)}<br>Amount due: {html.escape(due)}</p>
<p><a href="{html.escape(pdf_url)}">Download invoice PDF</a></p>
</body></html>
"""


def portal_page(session: Json, customer: Json, action_url: str) -> str:
    flow = (session.get("flow") or {}).get("type") or "portal_homepage"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Billing portal</title></head>
<body>
<h1>Billing portal (Stripe emulator)</h1>
<p>Customer: {html.escape(str(customer["email"] or customer["id"]))}</p>
<p>Flow: {html.escape(str(flow))}</p>
<form method="post" action="{html.escape(action_url)}">
<input type="hidden" name="payment_method" value="pm_card_visa">
<button type="submit">Use the test card Visa •••• 4242 as the default payment method</button>
</form>
</body></html>
"""


def checkout_page(session: Json, price: Json, action_url: str) -> str:
    amount = f"{int(price['unit_amount'] or 0) / 100:.2f} {str(price['currency']).upper()}"
    methods = ", ".join(str(kind) for kind in session["payment_method_types"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Checkout</title></head>
<body>
<h1>Subscribe (Stripe emulator)</h1>
<p>{html.escape(amount)} per {html.escape(str(price["recurring"]["interval"]))}</p>
<p>Pay with: {html.escape(methods)}</p>
<form method="post" action="{html.escape(action_url)}">
<input name="vpa" value="customer@okaxis">
<button type="submit">Approve the mandate and subscribe</button>
</form>
</body></html>
"""
