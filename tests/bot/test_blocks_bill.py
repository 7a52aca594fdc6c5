"""The bill message, its thread replies and the reject modal, built from bills held in memory (no Slack)."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.blocks.bill import MAX_MENTIONS, action_reply, already_done_text, bill_message, reject_modal
from bot.errors import AlreadyDone
from bot.slack_ids import ActionId, BlockId, CallbackId, InputId, bill_value, undo_value
from bot.formatting import timestamp
from bot import approval
from bot.workflow import SEND_IN_PROGRESS_FOR
from db.models import ActionOrigin, ActionType, Bill, BillAction, BillStatus, CreditNote, Customer, Role, User

AT = datetime(2026, 11, 3, 10, 32, tzinfo=timezone.utc)

CAROL = User(id=1, name="carol", role=Role.CUSTOMER_SUCCESS, slack_user_id="UCAROL")
OSCAR = User(id=2, name="oscar", role=Role.CUSTOMER_SUCCESS, slack_user_id="UOSCAR")
SAM = User(id=3, name="sam", role=Role.SALES, slack_user_id="USAM")
FIONA = User(id=4, name="fiona", role=Role.FINANCE, slack_user_id="UFIONA")
TEAM = {Role.CUSTOMER_SUCCESS: [CAROL, OSCAR], Role.SALES: [SAM], Role.FINANCE: [FIONA]}


def make_bill(*, csm_then_sales: bool = False, csm: User | None = None, name: str = "Acme") -> Bill:
    customer = Customer(
        id=1, name=name, billing_email="billing@acme.example", require_csm_approval=csm_then_sales, csm=csm
    )
    bill = Bill(
        id=12,
        customer=customer,
        year=2026,
        month=10,
        api_usage=12_000,
        monthly_api_limit=10_000,
        overage_units=2_000,
        overage_unit_cost=Decimal("0.010000"),
        overage_amount=Decimal("20.00"),
        status=BillStatus.DRAFT,
    )
    bill.actions.append(
        BillAction(id=1, action=ActionType.DRAFT, status_before=None, status_after=BillStatus.DRAFT, created_at=AT)
    )
    return bill


_ids = itertools.count(100)


def act(bill: Bill, user: User, action: ActionType, after: BillStatus, comment: str | None = None,
        undone: BillAction | None = None) -> BillAction:
    """Record an action in memory the way the workflow does."""
    entry = BillAction(
        id=next(_ids),
        stakeholder=user,
        action=action,
        comment=comment,
        status_before=bill.status,
        status_after=after,
        undone_action_id=undone.id if undone else None,
        created_at=AT,
    )
    bill.actions.append(entry)
    bill.status = after
    return entry


def message(bill: Bill, team=TEAM) -> tuple[str, list[dict]]:
    text, blocks = bill_message(bill, approval.progress(bill), team)
    assert_valid(blocks)
    return text, blocks


def reply(action: BillAction, bill: Bill, team=TEAM) -> tuple[str, list[dict]]:
    text, blocks = action_reply(action, bill, approval.progress(bill), team)
    assert_valid(blocks)
    return text, blocks


def assert_valid(blocks: list[dict]) -> None:
    assert 0 < len(blocks) <= 50
    for block in blocks:
        Block.parse(block).validate_json()


def buttons(blocks: list[dict]) -> list[tuple[str, str, str]]:
    return [
        (element["action_id"], element["text"]["text"], element["value"])
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def shown(blocks: list[dict]) -> str:
    """Every piece of text the blocks show, joined."""
    parts = []
    for block in blocks:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts += [field["text"] for field in block.get("fields", [])]
        parts += [element["text"] for element in block.get("elements", []) if element.get("type") == "mrkdwn"]
    return "\n".join(parts)


# --- the bill message ------------------------------------------------------------------------------


def test_a_new_one_step_bill_shows_its_figures_and_asks_everyone_who_may_approve():
    bill = make_bill()
    text, blocks = message(bill)
    body = shown(blocks)
    assert blocks[0] == {
        "type": "header", "text": {"type": "plain_text", "text": "Bill #12 · Acme · October 2026", "emoji": True}
    }
    figures = ("Acme", "October 2026", "12,000 calls (limit 10,000)", "2,000 calls", "$0.01 per call", "$20.00", "DRAFT")
    for figure in figures:
        assert figure in body
    assert "One approval" in body
    assert "waiting for <@UCAROL>, <@UOSCAR>, <@USAM> (Customer Success or Sales)" in body
    assert buttons(blocks) == [
        (ActionId.APPROVE.value, "Approve", bill_value(12, 1)),  # shown with the DRAFT action, #1
        (ActionId.REJECT.value, "Reject", bill_value(12, 1)),
    ]
    assert next(block for block in blocks if block["type"] == "actions")["block_id"] == BlockId.BILL_ACTIONS.value
    assert text.startswith("Bill #12 · Acme · October 2026: $20.00")
    assert "<@USAM>" in text


def test_a_csm_then_sales_bill_names_the_customers_csm_first_then_sales():
    bill = make_bill(csm_then_sales=True, csm=CAROL)
    text, blocks = message(bill)
    body = shown(blocks)
    assert "2 steps, in order" in body
    assert "1. :hourglass_flowing_sand: waiting for <@UCAROL> (Customer Success)" in body
    assert "2. :white_circle: then <@USAM> (Sales)" in body
    assert "<@UOSCAR>" not in body  # only the customer's own CSM may take step 1
    assert "Waiting for <@UCAROL> (Customer Success) to approve — step 1 of 2" in text


def test_after_the_csm_approves_the_bill_waits_for_sales_and_the_approval_can_be_undone():
    bill = make_bill(csm_then_sales=True, csm=CAROL)
    approval = act(bill, CAROL, ActionType.APPROVE, BillStatus.DRAFT, "step 1 of 2")
    _, blocks = message(bill)
    body = shown(blocks)
    assert "1. :white_check_mark: approved by <@UCAROL> (Customer Success) at 2026-11-03 10:32 UTC" in body
    assert "2. :hourglass_flowing_sand: waiting for <@USAM> (Sales)" in body
    assert buttons(blocks) == [
        (ActionId.APPROVE.value, "Approve", bill_value(12, approval.id)),
        (ActionId.REJECT.value, "Reject", bill_value(12, approval.id)),
        (ActionId.UNDO.value, "Undo approval", undo_value(12, approval.id)),
    ]


def test_a_final_bill_offers_send_with_a_confirmation_and_names_finance():
    bill = make_bill()
    approval = act(bill, SAM, ActionType.APPROVE, BillStatus.FINAL)
    _, blocks = message(bill)
    body = shown(blocks)
    assert "FINAL" in body
    assert "Ready to send — <@UFIONA> (Finance)" in body
    assert buttons(blocks) == [
        (ActionId.SEND.value, "Send", bill_value(12, approval.id)),
        (ActionId.UNDO.value, "Undo approval", undo_value(12, approval.id)),
    ]
    send = next(block for block in blocks if block["type"] == "actions")["elements"][0]
    assert "billing@acme.example" in send["confirm"]["text"]["text"]


def test_a_send_on_its_way_is_shown_with_when_it_counts_as_interrupted_and_only_what_to_do_then():
    bill = make_bill()
    approval = act(bill, SAM, ActionType.APPROVE, BillStatus.FINAL)
    bill.sending_started_at, bill.sending_by = datetime.now(timezone.utc), FIONA
    _, blocks = message(bill)
    started, deadline = bill.sending_started_at, bill.sending_started_at + SEND_IN_PROGRESS_FOR
    assert (f":hourglass_flowing_sand: Bill #12 is being emailed by fiona since {timestamp(started)}. If this is"
            f" still shown at {timestamp(deadline)}, the send was interrupted") in shown(blocks)
    # The message is not redrawn when the send turns out to be interrupted: its buttons are ready for then.
    assert buttons(blocks) == [
        (ActionId.SEND_AGAIN.value, "Send again", bill_value(12, approval.id)),
        (ActionId.MARK_SENT.value, "Mark as sent", bill_value(12, approval.id)),
    ]


def test_a_send_whose_outcome_is_unknown_warns_and_offers_send_again_and_mark_as_sent_with_confirmations():
    bill = make_bill()
    act(bill, SAM, ActionType.APPROVE, BillStatus.FINAL)
    bill.sending_started_at, bill.sending_by = AT, FIONA
    bill.sending_error = "the mail server at mail:25 did not answer within 30 seconds <after> & so on"
    _, blocks = message(bill)
    body = shown(blocks)
    assert (":warning: Sending of bill #12 is uncertain: fiona started emailing it at 2026-11-03 10:32 UTC and"
            " the outcome was never confirmed (the mail server at mail:25 did not answer within 30 seconds"
            " &lt;after&gt; &amp; so on). The customer may have received it.") in body
    assert "`/bill send 12 again`" in body and "`/bill send 12 delivered`" in body
    [send_again, mark_sent] = next(block for block in blocks if block["type"] == "actions")["elements"]
    assert send_again["action_id"] == ActionId.SEND_AGAIN.value
    assert send_again["confirm"]["title"]["text"] == "Send this bill again?"
    assert "may already have reached the customer" in send_again["confirm"]["text"]["text"]
    assert mark_sent["action_id"] == ActionId.MARK_SENT.value
    assert mark_sent["confirm"]["title"]["text"] == "Mark this bill as sent?"
    assert mark_sent["confirm"]["text"]["text"] == (
        "Bill #12 is recorded as sent to billing@acme.example. No email will be sent: do this only once you know"
        " the customer received the earlier email."
    )


def test_a_written_off_bill_shows_who_rejected_it_and_why_and_only_offers_undo():
    bill = make_bill()
    rejection = act(bill, OSCAR, ActionType.REJECT, BillStatus.WRITEOFF, "Waived <!channel> & refunded")
    _, blocks = message(bill)
    body = shown(blocks)
    assert "*Rejected* by <@UOSCAR> at 2026-11-03 10:32 UTC: Waived &lt;!channel&gt; &amp; refunded" in body
    assert "<!channel>" not in body
    assert buttons(blocks) == [(ActionId.UNDO.value, "Undo rejection", undo_value(12, rejection.id))]


def test_a_sent_bill_has_no_buttons():
    bill = make_bill()
    act(bill, SAM, ActionType.APPROVE, BillStatus.FINAL)
    act(bill, FIONA, ActionType.SEND, BillStatus.SENT, "emailed to billing@acme.example")
    text, blocks = message(bill)
    assert buttons(blocks) == []
    assert not any(block["type"] == "actions" for block in blocks)
    assert "*Sent* by <@UFIONA>" in shown(blocks)
    assert "the invoice can be sent again or credited" in text


def test_an_edit_can_be_undone_and_asks_for_approval_again():
    bill = make_bill()
    edit = act(bill, FIONA, ActionType.EDIT, BillStatus.DRAFT, "unit cost 0.010000 → 0.020000, amount 20.00 → 40.00")
    _, blocks = message(bill)
    assert [button[0] for button in buttons(blocks)] == [ActionId.APPROVE, ActionId.REJECT, ActionId.UNDO]
    assert buttons(blocks)[-1] == (ActionId.UNDO.value, "Undo edit", undo_value(12, edit.id))


def test_people_without_a_linked_slack_user_are_named_and_a_crowd_is_named_by_role():
    unlinked_csm = User(id=9, name="carl", role=Role.CUSTOMER_SUCCESS, slack_user_id=None)
    bill = make_bill(csm_then_sales=True, csm=unlinked_csm)
    _, blocks = message(bill, team={})
    body = shown(blocks)
    assert "waiting for carl (Customer Success)" in body
    assert "then Sales" in body
    assert "<@" not in body

    crowd = [User(id=20 + n, name=f"s{n}", role=Role.SALES, slack_user_id=f"US{n}") for n in range(MAX_MENTIONS + 1)]
    _, blocks = message(make_bill(), team={Role.SALES: crowd})
    assert "waiting for Customer Success or Sales" in shown(blocks)
    assert "<@US0>" not in shown(blocks)


def test_markup_in_a_customer_name_is_shown_literally_and_a_long_name_fits_the_header():
    _, blocks = message(make_bill(name="<!here> R&D"))
    assert "&lt;!here&gt; R&amp;D" in shown(blocks)
    assert blocks[0]["text"]["text"] == "Bill #12 · <!here> R&D · October 2026"  # plain text: no markup

    _, blocks = message(make_bill(name="N" * 200))
    header = blocks[0]["text"]["text"]
    assert len(header) == 150 and header.endswith("… · October 2026")


# --- thread replies ------------------------------------------------------------------------------


def test_the_reply_to_a_first_step_approval_mentions_sales_as_the_next_approver():
    bill = make_bill(csm_then_sales=True, csm=CAROL)
    approval = act(bill, CAROL, ActionType.APPROVE, BillStatus.DRAFT, "step 1 of 2")
    text, blocks = reply(approval, bill)
    body = shown(blocks)
    assert ":white_check_mark: <@UCAROL> approved bill #12 (step 1 of 2)" in body
    assert "Status: DRAFT → DRAFT" in body
    assert "Waiting for <@USAM> (Sales) to approve — step 2 of 2" in body
    assert "<@UCAROL> approved bill #12" in text and "<@USAM>" in text


def test_the_reply_to_the_last_approval_says_the_bill_is_ready_for_finance():
    bill = make_bill()
    approval = act(bill, SAM, ActionType.APPROVE, BillStatus.FINAL)
    _, blocks = reply(approval, bill)
    body = shown(blocks)
    assert "<@USAM> approved bill #12" in body
    assert "Status: DRAFT → FINAL" in body
    assert "Ready to send — <@UFIONA> (Finance)" in body


def test_the_reply_to_a_rejection_shows_the_reason_exactly_as_typed():
    bill = make_bill()
    reason = "Outage in October <!channel> *not* our fault\nsecond line"
    rejection = act(bill, OSCAR, ActionType.REJECT, BillStatus.WRITEOFF, reason)
    text, blocks = reply(rejection, bill)
    assert ":no_entry_sign: <@UOSCAR> rejected bill #12 and wrote it off" in blocks[0]["text"]["text"]
    assert blocks[1]["text"] == {"type": "plain_text", "text": f"Reason: {reason}", "emoji": False}
    assert "Status: DRAFT → WRITEOFF" in shown(blocks)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_the_reply_to_an_undo_names_whose_action_was_undone():
    bill = make_bill()
    rejection = act(bill, OSCAR, ActionType.REJECT, BillStatus.WRITEOFF, "wrong customer")
    undo = act(bill, FIONA, ActionType.UNDO, BillStatus.DRAFT, "rejected by mistake", undone=rejection)
    _, blocks = reply(undo, bill)
    body = shown(blocks)
    assert "<@UFIONA> undid <@UOSCAR>'s rejection on bill #12" in body
    assert "Reason: rejected by mistake" in body
    assert "Status: WRITEOFF → DRAFT" in body
    assert "Waiting for" in body


def test_the_reply_to_an_edit_and_to_a_send_carry_what_changed():
    bill = make_bill()
    edit = act(bill, FIONA, ActionType.EDIT, BillStatus.DRAFT, "unit cost 0.010000 → 0.020000, amount 20.00 → 40.00")
    body = shown(reply(edit, bill)[1])
    assert "<@UFIONA> edited bill #12 (unit cost 0.010000 → 0.020000, amount 20.00 → 40.00)" in body
    assert "no longer count" in body

    act(bill, SAM, ActionType.APPROVE, BillStatus.FINAL)
    send = act(bill, FIONA, ActionType.SEND, BillStatus.SENT, "emailed to billing@acme.example")
    body = shown(reply(send, bill)[1])
    assert "<@UFIONA> sent bill #12 (emailed to billing@acme.example)" in body
    assert "Status: FINAL → SENT" in body


def test_the_longest_reason_full_of_markup_stays_within_slacks_limits():
    bill = make_bill()
    rejection = act(bill, OSCAR, ActionType.REJECT, BillStatus.WRITEOFF, "&<" * 1000)
    text, blocks = reply(rejection, bill)
    assert len(text) < 40_000
    _, blocks = message(bill)  # the message shows the start of the reason
    assert all(len(block.get("text", {}).get("text", "")) <= 3000 for block in blocks)


# --- refusals and the modal ----------------------------------------------------------------------


def test_an_already_done_refusal_names_a_linked_person_with_a_mention():
    refusal = AlreadyDone(
        "Bill #12 was already approved by sam at 2026-11-03 10:32 UTC",
        bill_id=12, action=ActionType.APPROVE, user_id=3, user_name="sam", slack_user_id="USAM", at=AT,
    )
    assert already_done_text(refusal) == "Bill #12 was already approved by <@USAM> at 2026-11-03 10:32 UTC"
    unlinked = AlreadyDone("Bill #12 was already approved by sam at 10:32", user_name="sam", slack_user_id=None)
    assert already_done_text(unlinked) == "Bill #12 was already approved by sam at 10:32"


def test_the_reject_modal_asks_for_a_required_reason_and_carries_the_bill_as_shown():
    view = reject_modal(make_bill())
    View(**view).validate_json()
    assert view["type"] == "modal"
    assert view["callback_id"] == CallbackId.REJECT_MODAL.value
    assert view["private_metadata"] == bill_value(12, 1)
    assert len(view["title"]["text"]) <= 24
    reason = next(block for block in view["blocks"] if block["type"] == "input")
    assert reason["block_id"] == BlockId.REJECT_REASON.value
    assert reason["optional"] is False
    assert reason["element"] == {
        "type": "plain_text_input",
        "action_id": InputId.REJECT_REASON.value,
        "multiline": True,
        "max_length": 2000,
        "placeholder": {"type": "plain_text", "text": "Why is this bill written off?", "emoji": True},
    }
    assert "Bill #12" in view["blocks"][0]["text"]["text"]


def test_buttons_carry_the_latest_effective_action_so_an_undone_edit_shows_the_earlier_version():
    bill = make_bill()
    edit = act(bill, FIONA, ActionType.EDIT, BillStatus.DRAFT, "unit cost 0.010000 → 0.020000")
    assert {value for _, label, value in buttons(message(bill)[1]) if label == "Approve"} == {bill_value(12, edit.id)}
    act(bill, FIONA, ActionType.UNDO, BillStatus.DRAFT, undone=edit)
    assert {value for _, label, value in buttons(message(bill)[1]) if label == "Approve"} == {bill_value(12, 1)}


@pytest.mark.parametrize("status", list(BillStatus))
def test_every_state_renders_valid_blocks_without_a_team(status):
    bill = make_bill(csm_then_sales=True)
    if status is not BillStatus.DRAFT:
        act(bill, OSCAR, ActionType.REJECT if status is BillStatus.WRITEOFF else ActionType.APPROVE, status)
    message(bill, team=None)
    reply(bill.actions[-1], bill, team=None)


# --- invoices, credit notes and usage corrections ----------------------------------------------------


def sent_with_invoice() -> Bill:
    bill = make_bill()
    act(bill, SAM, ActionType.APPROVE, BillStatus.FINAL)
    act(bill, FIONA, ActionType.SEND, BillStatus.SENT, "invoice BP-2026-000012 emailed to billing@acme.example")
    bill.invoice_number, bill.issue_date, bill.due_date = "BP-2026-000012", date(2026, 11, 3), date(2026, 12, 3)
    return bill


def test_a_sent_bill_shows_its_invoice_its_credit_notes_and_offers_the_pdf():
    bill = sent_with_invoice()
    bill.credit_notes.append(CreditNote(
        id=1, number="CN-2026-000001", issue_date=date(2026, 11, 9), amount=Decimal("7.50"), currency="USD",
        reason="Outage on the 14th", emailed_at=AT,
    ))

    text, blocks = message(bill)

    shown = "\n".join(str(block) for block in blocks)
    assert "*Invoice* BP-2026-000012, issued November 3, 2026, due December 3, 2026" in shown
    assert "*Credit note* CN-2026-000001 of November 9, 2026: $7.50 (Outage on the 14th)" in shown
    assert buttons(blocks) == [(ActionId.PDF.value, "Invoice PDF", bill_value(12))]


def test_hundreds_of_credit_notes_keep_the_message_within_slacks_limits():
    bill = sent_with_invoice()
    for number in range(1, 301):
        bill.credit_notes.append(CreditNote(
            id=number, number=f"CN-2026-{number:06d}", issue_date=date(2026, 11, 9), amount=Decimal("0.01"),
            currency="USD", reason="x" * 200,
        ))
    message(bill)  # validated against Slack's block limits


def test_a_recompute_says_what_changed_and_that_approvals_start_over():
    bill = make_bill()
    act(bill, SAM, ActionType.APPROVE, BillStatus.FINAL)
    recompute = BillAction(
        id=next(_ids), stakeholder=None, origin=ActionOrigin.IMPORT, action=ActionType.RECOMPUTE,
        status_before=BillStatus.FINAL,
        status_after=BillStatus.DRAFT, usage_before=12_000, usage_after=13_000, amount_before=Decimal("20.00"),
        amount_after=Decimal("30.00"), created_at=AT,
        comment="usage import of late.csv: usage 12,000 → 13,000 calls, amount $20.00 → $30.00; approvals start over",
    )
    bill.actions.append(recompute)
    bill.status = BillStatus.DRAFT

    text, _ = reply(recompute, bill)

    assert text.startswith(
        ":arrows_counterclockwise: A usage import recomputed bill #12: usage import of late.csv: usage 12,000 →"
        " 13,000 calls, amount $20.00 → $30.00; approvals start over. Approvals given before no longer count."
        " Status: FINAL → DRAFT."
    )
    _, blocks = message(bill)
    assert (ActionId.UNDO.value, "Undo usage correction", undo_value(12, recompute.id)) in buttons(blocks)
