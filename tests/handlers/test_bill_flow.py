"""Bill messages and the clicks on them, end to end: signed clicks and modal submissions reach the real
server, and the tests read what reached "Slack": the bill's message, its updates, its thread, ephemeral
answers and modals."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from email import message_from_bytes, policy

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import func, select

from bot import workflow
from bot.billing import generate_month
from bot.formatting import timestamp
from bot.periods import Period
from bot.invoices import Invoicing
from bot.slack_ids import ActionId, BlockId, CallbackId, InputId, bill_value, undo_value
from db.models import ActionType, Bill, BillAction, BillStatus, Customer, Role, User, utcnow
from sandbox.app_requests import block_actions_body
from sandbox.slack import CHANNEL_ID
from tests.factories import add_customer
from tests.slack_helpers import texts, wait_until

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)

FINANCE, CSM, OTHER_CS, SALES, OTHER_SALES, STRANGER = (
    "UFIONA01", "UCAROL01", "UOSCAR01", "USAM0001", "USARA001", "UNOBODY1",
)
MESSAGE_METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral")
VIEW_METHODS = ("views.open", "views.update", "views.publish")
INJECTED_ERRORS = {"internal_error", "ratelimited"}  # the failures tests ask the fake for


# --- set-up ------------------------------------------------------------------------------------------


class Bills:
    """The harness plus what these tests need: a team, customers, bills posted to Slack."""

    def __init__(self, slack):
        self.slack = slack
        self.fake = slack.fake
        self.fiona = slack.user("fiona", Role.FINANCE, FINANCE)
        self.carol = slack.user("carol", Role.CUSTOMER_SUCCESS, CSM)
        self.oscar = slack.user("oscar", Role.CUSTOMER_SUCCESS, OTHER_CS)
        self.sam = slack.user("sam", Role.SALES, SALES)

    def customer(self, name: str, **terms) -> None:
        with self.slack.db() as session:
            add_customer(session, name, usage={(PERIOD.year, PERIOD.month): 3_000}, **terms)

    def generate(self) -> dict[str, int]:
        """Generate the month's bills; returns their ids by customer name."""
        with self.slack.db() as session:
            generate_month(session=session, period=PERIOD, actor=self.fiona, today=TODAY)
        with self.slack.db() as session:
            return dict(session.execute(select(Customer.name, Bill.id).join(Bill.customer)).all())

    def generate_and_post(self) -> dict[str, int]:
        ids = self.generate()
        self.slack.settle()
        return ids

    def bill(self, bill_id: int) -> Bill:
        with self.slack.db() as session:
            bill = session.get(Bill, bill_id)
            _ = bill.actions
            return bill

    def actions(self, bill_id: int) -> list[ActionType]:
        return [action.action for action in self.bill(bill_id).actions]

    def message(self, bill_id: int) -> dict:
        """The bill's message as Slack shows it now."""
        bill = self.bill(bill_id)
        message = self.fake.message(bill.slack_channel, bill.slack_ts)
        assert message is not None, f"bill #{bill_id} has no message"
        return message

    def thread(self, bill_id: int) -> list[dict]:
        """The replies in the bill's thread, oldest first."""
        ts = self.bill(bill_id).slack_ts
        return [call for call in self.fake.calls("chat.postMessage") if call.get("thread_ts") == ts]

    def wait_thread(self, bill_id: int, count: int) -> list[dict]:
        return wait_until(lambda: self.thread(bill_id), count, f"{count} thread replies on bill #{bill_id}")

    def click(self, slack_user_id: str, action_id: ActionId, bill_id: int, value: str | None = None) -> None:
        """Click a button on the bill's message as it stands now."""
        value = value if value is not None else bill_value(bill_id)
        message = self.message(bill_id)
        response = self.slack.click(slack_user_id, action_id.value, value, message=message)
        assert response.status == 200 and response.body == ""

    def click_button(self, slack_user_id: str, bill_id: int, label: str) -> None:
        """Click the button the message shows with this label, with the value it carries."""
        action_id, value = button_values(self.message(bill_id))[label]
        self.click(slack_user_id, ActionId(action_id), bill_id, value)

    def told(self, slack_user_id: str, count: int = 1) -> list[str]:
        """What this person was told through the response_url of their clicks."""
        posts = wait_until(lambda: self.slack.responses(slack_user_id), count, f"an answer to {slack_user_id}")
        for post in posts:
            assert post["response_type"] == "ephemeral" and post["replace_original"] is False
        return [post["text"] for post in posts]

    def submit_reason(self, slack_user_id: str, bill_id: int, reason: str | None):
        return self.slack.submit(
            slack_user_id,
            CallbackId.REJECT_MODAL.value,
            bill_value(bill_id),
            {(BlockId.REJECT_REASON.value, InputId.REJECT_REASON.value): reason},
        )

    def settle(self) -> None:
        """Wait until every job is applied and every message delivered, for tests that expect nothing more."""
        self.slack.settle()

    def bill_updates(self) -> list[dict]:
        """chat.update calls on the bills' messages (not on the month's summary)."""
        with self.slack.db() as session:
            bill_ts = set(session.scalars(select(Bill.slack_ts)))
        return [call for call in self.fake.calls("chat.update") if call["ts"] in bill_ts]

    def wait_updates(self, count: int) -> list[dict]:
        return wait_until(self.bill_updates, count, f"{count} update(s) of bill messages")

    def bill_posts(self) -> list[dict]:
        """The bills' own messages (not thread replies or summaries), in bill order."""
        posts = [call for call in self.fake.calls("chat.postMessage")
                 if "thread_ts" not in call and "bill_id" in call.get("metadata", {}).get("event_payload", {})]
        return sorted(posts, key=lambda call: call["metadata"]["event_payload"]["bill_id"])


def button_values(message: dict) -> dict[str, tuple[str, str]]:
    """The message's buttons: label → (action_id, value)."""
    return {
        element["text"]["text"]: (element["action_id"], element["value"])
        for block in message.get("blocks") or []
        if block["type"] == "actions"
        for element in block["elements"]
    }


def assert_every_payload_valid(fake) -> None:
    """Every message and view the app sent is valid Block Kit, within Slack's limits."""
    for method in MESSAGE_METHODS + ("response_url",):
        for call in fake.calls(method):
            blocks = call.get("blocks") or []
            assert len(blocks) <= 50, method
            for block in blocks:
                Block.parse(block).validate_json()
    for method in VIEW_METHODS:
        for call in fake.calls(method):
            blocks = call["view"].get("blocks") or []
            assert len(blocks) <= 100, method
            for block in blocks:
                Block.parse(block).validate_json()
    unexpected = [call for call in fake.recorded() if call.error and call.error not in INJECTED_ERRORS]
    assert unexpected == [], "Slack refused a call"


@pytest.fixture
def bills(slack):
    bills = Bills(slack)
    yield bills
    assert_every_payload_valid(slack.fake)


@pytest.fixture
def one_step(bills) -> int:
    bills.customer("Acme")
    return bills.generate_and_post()["Acme"]


@pytest.fixture
def csm_then_sales(bills) -> int:
    bills.customer("Beta", require_csm_approval=True, csm=bills.carol)
    return bills.generate_and_post()["Beta"]


# --- posting ---------------------------------------------------------------------------------------


def test_each_new_bill_is_posted_once_with_its_figures_buttons_and_approvers(bills):
    bills.customer("Acme")
    bills.customer("Beta", require_csm_approval=True, csm=bills.carol)
    ids = bills.generate()
    with bills.slack.db() as session:
        generated = {bill.id: bill.updated_at for bill in session.scalars(select(Bill))}

    bills.settle()
    with bills.slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=bills.fiona, today=TODAY)  # creates nothing new
    bills.settle()

    acme, beta = bills.bill_posts()
    assert acme["channel"] == beta["channel"] == CHANNEL_ID
    assert f"Bill #{ids['Acme']} · Acme · October 2026: $20.00" in acme["text"]
    for figure in ("3,000 calls (limit 1,000)", "2,000 calls", "$0.01 per call", "$20.00", "DRAFT"):
        assert figure in texts(acme)
    assert f"waiting for <@{CSM}>, <@{OTHER_CS}>, <@{SALES}> (Customer Success or Sales)" in texts(acme)
    assert f"waiting for <@{CSM}> (Customer Success)" in texts(beta)
    assert f"then <@{SALES}> (Sales)" in texts(beta)
    assert f"<@{OTHER_CS}>" not in texts(beta)
    for post, bill_id in ((acme, ids["Acme"]), (beta, ids["Beta"])):
        drafted = bills.bill(bill_id).actions[0].id  # the version shown: the bill as drafted
        assert button_values(post) == {
            "Approve": (ActionId.APPROVE.value, bill_value(bill_id, drafted)),
            "Reject": (ActionId.REJECT.value, bill_value(bill_id, drafted)),
        }

    with bills.slack.db() as session:
        stored = list(session.scalars(select(Bill).order_by(Bill.id)))
        for bill in stored:
            assert bills.fake.message(bill.slack_channel, bill.slack_ts)["text"].startswith(f"Bill #{bill.id} ·")
        # Where a message lives is not a change of the bill: no action, no new updated_at.
        assert {bill.id: bill.updated_at for bill in stored} == generated
        assert session.scalar(select(func.count()).select_from(BillAction)) == 2


def test_bills_generated_before_slack_is_configured_are_posted_once_it_is(make_slack):
    bills = Bills(make_slack(deliver=False))  # Slack not reachable yet: nothing is delivered
    bills.customer("Acme")
    acme = bills.generate()["Acme"]
    with bills.slack.db() as session:
        workflow.approve(session=session, bill_id=acme, actor=bills.sam)
    assert [m for m in bills.fake.methods_called() if m.startswith("chat.")] == []

    make_slack()  # the app starts with Slack configured: its workers deliver what was queued
    bills.settle()
    [post] = bills.bill_posts()
    assert "FINAL" in texts(post)  # the message shows the bill as it is now
    [reply] = bills.thread(acme)
    assert f"<@{SALES}> approved bill #{acme}" in texts(reply)


# --- approving -----------------------------------------------------------------------------------------


def test_a_one_step_bill_approved_by_sales_is_updated_in_place_and_told_in_its_thread(bills, one_step):
    posted = bills.message(one_step)

    bills.click(SALES, ActionId.APPROVE, one_step)

    update = bills.wait_updates(1)[0]
    assert (update["channel"], update["ts"]) == (CHANNEL_ID, posted["ts"])
    [reply] = bills.wait_thread(one_step, 1)
    assert reply["channel"] == CHANNEL_ID and reply["thread_ts"] == posted["ts"]
    assert f"<@{SALES}> approved bill #{one_step}" in texts(reply)
    assert "DRAFT → FINAL" in texts(reply)
    assert f"Ready to send — <@{FINANCE}> (Finance)" in texts(reply)

    message = bills.message(one_step)
    assert "FINAL" in texts(message)
    assert list(button_values(message)) == ["Send", "Undo approval"]
    assert bills.bill(one_step).status is BillStatus.FINAL
    assert bills.actions(one_step) == [ActionType.DRAFT, ActionType.APPROVE]
    assert bills.slack.responses(SALES) == []  # nothing to complain about


def test_a_csm_then_sales_bill_waits_for_the_csm_before_sales(bills, csm_then_sales):
    bills.click(SALES, ActionId.APPROVE, csm_then_sales)
    [refusal] = bills.told(SALES)
    assert f"Bill #{csm_then_sales} is waiting for carol (the customer's CSM) to approve first" in refusal
    bills.settle()
    assert bills.bill_updates() == []
    assert bills.actions(csm_then_sales) == [ActionType.DRAFT]

    bills.click(CSM, ActionId.APPROVE, csm_then_sales)
    [first] = bills.wait_thread(csm_then_sales, 1)
    assert f"<@{CSM}> approved bill #{csm_then_sales} (step 1 of 2: the customer's CSM)" in texts(first)
    assert f"Waiting for <@{SALES}> (Sales) to approve — step 2 of 2" in texts(first)
    assert bills.bill(csm_then_sales).status is BillStatus.DRAFT
    wait_until(lambda: bills.bill_updates(), 1, "the message updated")
    assert f"approved by <@{CSM}> (Customer Success)" in texts(bills.message(csm_then_sales))

    bills.click(SALES, ActionId.APPROVE, csm_then_sales)
    _, second = bills.wait_thread(csm_then_sales, 2)
    assert f"<@{SALES}> approved bill #{csm_then_sales} (step 2 of 2: after the customer's CSM)" in texts(second)
    assert "DRAFT → FINAL" in texts(second)
    assert bills.bill(csm_then_sales).status is BillStatus.FINAL
    assert bills.actions(csm_then_sales) == [ActionType.DRAFT, ActionType.APPROVE, ActionType.APPROVE]
    assert {update["ts"] for update in bills.wait_updates(2)} == {bills.bill(csm_then_sales).slack_ts}
    assert bills.slack.responses(CSM) == [] and len(bills.slack.responses(SALES)) == 1


def test_an_edit_asks_for_every_approval_again(bills, csm_then_sales):
    bills.click(CSM, ActionId.APPROVE, csm_then_sales)
    bills.wait_thread(csm_then_sales, 1)

    assert bills.slack.command(FINANCE, f"edit {csm_then_sales} 0.02").status == 200  # as Finance types it

    _, edited = bills.wait_thread(csm_then_sales, 2)
    change = "unit cost 0.010000 → 0.020000, amount $20.00 → $40.00"
    assert f"<@{FINANCE}> edited bill #{csm_then_sales} ({change})" in texts(edited)
    assert f"Waiting for <@{CSM}> (Customer Success) to approve — step 1 of 2" in texts(edited)
    message = bills.message(csm_then_sales)
    assert "40.00" in texts(message) and "0.02 per call" in texts(message)
    assert list(button_values(message)) == ["Approve", "Reject", "Undo edit"]

    bills.click(SALES, ActionId.APPROVE, csm_then_sales)
    assert "waiting for carol" in bills.told(SALES)[0]
    bills.click(CSM, ActionId.APPROVE, csm_then_sales)
    bills.wait_thread(csm_then_sales, 3)
    bills.click(SALES, ActionId.APPROVE, csm_then_sales)
    bills.wait_thread(csm_then_sales, 4)
    assert bills.bill(csm_then_sales).status is BillStatus.FINAL


def test_approve_on_a_message_from_before_an_edit_is_refused_and_the_message_refreshed(bills, one_step):
    old = bills.message(one_step)
    _, seen = button_values(old)["Approve"]
    with bills.slack.db() as session:
        workflow.edit(session=session, bill_id=one_step, actor=bills.fiona, unit_cost="0.02")
    bills.settle()
    before = len(bills.thread(one_step))
    # Sam clicks a copy of the message from before the edit (it reached them before the update did).

    bills.click(SALES, ActionId.APPROVE, one_step, seen)
    [refusal] = bills.told(SALES)

    assert refusal.startswith(f":warning: Bill #{one_step} changed since you saw it: edited by <@{FINANCE}> at ")
    assert refusal.endswith(" UTC. Look at it again before approving.")
    assert bills.actions(one_step) == [ActionType.DRAFT, ActionType.EDIT]
    assert bills.bill(one_step).status is BillStatus.DRAFT
    *_, update = bills.wait_updates(2)  # the edit's update, then the refresh after the refusal
    assert (update["channel"], update["ts"]) == (CHANNEL_ID, old["ts"])
    assert "40.00" in texts(update) and "0.02 per call" in texts(update)
    bills.settle()
    assert len(bills.thread(one_step)) == before  # the refused click added nothing to the history

    bills.click_button(SALES, one_step, "Approve")  # on the refreshed message
    bills.wait_thread(one_step, before + 1)
    assert bills.bill(one_step).status is BillStatus.FINAL


def test_reject_on_a_message_from_before_an_edit_opens_no_modal(bills, one_step):
    _, seen = button_values(bills.message(one_step))["Reject"]
    with bills.slack.db() as session:
        workflow.edit(session=session, bill_id=one_step, actor=bills.fiona, unit_cost="0.02")

    bills.click(CSM, ActionId.REJECT, one_step, seen)  # on a copy of the message from before the edit

    [refusal] = bills.told(CSM)
    assert f"Bill #{one_step} changed since you saw it: edited by <@{FINANCE}>" in refusal
    assert refusal.endswith("Look at it again before rejecting.")
    bills.settle()
    assert bills.fake.calls("views.open") == []
    assert bills.actions(one_step) == [ActionType.DRAFT, ActionType.EDIT]


def test_a_reason_submitted_in_a_modal_opened_before_an_edit_is_refused_in_the_modal(bills, one_step):
    bills.click_button(CSM, one_step, "Reject")
    modal = bills.fake.wait_for("views.open")[0]["view"]
    with bills.slack.db() as session:
        workflow.edit(session=session, bill_id=one_step, actor=bills.fiona, unit_cost="0.02")

    answer = bills.slack.submit(
        CSM,
        CallbackId.REJECT_MODAL.value,
        modal["private_metadata"],
        {(BlockId.REJECT_REASON.value, InputId.REJECT_REASON.value): "too expensive"},
    )

    error = answer.json()["errors"][BlockId.REJECT_REASON.value]
    assert f"Bill #{one_step} changed since you saw it: edited by fiona at" in error
    assert bills.actions(one_step) == [ActionType.DRAFT, ActionType.EDIT]
    wait_until(lambda: bills.bill_updates(), 1, "the message refreshed")


# --- rejecting -------------------------------------------------------------------------------------------


def test_reject_opens_a_modal_and_the_reason_writes_the_bill_off_then_undo_brings_it_back(bills, one_step):
    bills.click(CSM, ActionId.REJECT, one_step)
    opened = bills.fake.wait_for("views.open")[0]
    assert opened["trigger_id"]
    modal = opened["view"]
    assert modal["callback_id"] == CallbackId.REJECT_MODAL.value
    assert modal["private_metadata"] == bill_value(one_step, bills.bill(one_step).actions[0].id)
    assert [block.get("block_id") for block in modal["blocks"] if block["type"] == "input"] == [
        BlockId.REJECT_REASON.value
    ]

    answer = bills.submit_reason(CSM, one_step, "  Outage credit agreed with <the customer>  ")
    assert answer.status == 200 and answer.body == ""  # an empty acknowledgement closes the modal

    [rejected] = bills.wait_thread(one_step, 1)
    assert f"<@{CSM}> rejected bill #{one_step} and wrote it off" in texts(rejected)
    assert "Reason: Outage credit agreed with <the customer>" in texts(rejected)
    assert "DRAFT → WRITEOFF" in texts(rejected)
    bill = bills.bill(one_step)
    assert bill.status is BillStatus.WRITEOFF
    assert bill.actions[-1].comment == "Outage credit agreed with <the customer>"
    wait_until(lambda: bills.bill_updates(), 1, "the message updated")
    assert list(button_values(bills.message(one_step))) == ["Undo rejection"]

    bills.click_button(CSM, one_step, "Undo rejection")
    _, undone = bills.wait_thread(one_step, 2)
    assert f"<@{CSM}> undid <@{CSM}>'s rejection on bill #{one_step}" in texts(undone)
    assert "WRITEOFF → DRAFT" in texts(undone)
    assert bills.bill(one_step).status is BillStatus.DRAFT
    wait_until(lambda: bills.bill_updates(), 2, "the message updated twice")
    assert list(button_values(bills.message(one_step))) == ["Approve", "Reject"]


@pytest.mark.parametrize("reason", [None, "", "   \n ", "x" * 2001])
def test_an_empty_or_too_long_reason_is_shown_in_the_modal_and_changes_nothing(bills, one_step, reason):
    answer = bills.submit_reason(CSM, one_step, reason)

    assert answer.status == 200
    body = answer.json()
    assert body["response_action"] == "errors"
    error = body["errors"][BlockId.REJECT_REASON.value]
    assert ("required" in error) if reason is None or not reason.strip() else ("2001 characters" in error)
    bills.settle()
    assert bills.bill(one_step).status is BillStatus.DRAFT
    assert bills.actions(one_step) == [ActionType.DRAFT]
    assert bills.bill_updates() == [] and bills.thread(one_step) == []


def test_a_rejection_that_comes_too_late_is_shown_in_the_modal(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step)
    bills.wait_thread(one_step, 1)

    answer = bills.submit_reason(CSM, one_step, "too expensive")

    error = answer.json()["errors"][BlockId.REJECT_REASON.value]
    assert f"Bill #{one_step} was already approved by sam at" in error
    assert bills.bill(one_step).status is BillStatus.FINAL


def test_reject_by_someone_who_may_not_reject_gets_the_reason_instead_of_a_modal(bills, one_step):
    bills.click(FINANCE, ActionId.REJECT, one_step)

    assert bills.told(FINANCE) == [f":warning: Only Customer Success and Sales can reject bill #{one_step}"]
    bills.settle()
    assert bills.fake.calls("views.open") == []


# --- sending ---------------------------------------------------------------------------------------------


def test_finance_sends_a_final_bill_and_its_buttons_are_gone(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step)
    bills.wait_thread(one_step, 1)

    bills.click(FINANCE, ActionId.SEND, one_step)

    _, sent = bills.wait_thread(one_step, 2)
    number = bills.bill(one_step).invoice_number
    assert f"<@{FINANCE}> sent bill #{one_step} (invoice {number} emailed to billing@acme.example via bill-" in texts(sent)
    assert "FINAL → SENT" in texts(sent)
    assert bills.bill(one_step).status is BillStatus.SENT
    [eml] = list(bills.slack.settings.mail_dir.glob("*.eml"))
    email = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert email["To"] == "billing@acme.example" and f"Invoice {number} " in email["Subject"]
    wait_until(lambda: bills.bill_updates(), 2, "the message updated twice")
    message = bills.message(one_step)
    assert button_values(message) == {"Invoice PDF": (ActionId.PDF.value, f"bill:{one_step}")}
    assert "SENT" in texts(message)


def test_sales_clicking_send_is_refused(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step)
    bills.wait_thread(one_step, 1)

    bills.click(SALES, ActionId.SEND, one_step)

    assert bills.told(SALES) == [":warning: Only Finance can send bills"]
    bills.settle()
    assert bills.bill(one_step).status is BillStatus.FINAL
    assert list(bills.slack.settings.mail_dir.glob("*.eml")) == []


def interrupt_send(bills: Bills, bill_id: int, *, minutes_ago: float) -> None:
    """Leave the bill as a send that started `minutes_ago` and never finished leaves it (the process died)."""
    with bills.slack.db() as session, session.begin():
        bill = session.get(Bill, bill_id)
        Invoicing().issue_invoice(session, bill)  # as the send did when it started
        bill.sending_started_at = utcnow() - timedelta(minutes=minutes_ago)
        bill.sending_by_id = bills.fiona.id


def test_an_interrupted_send_is_refused_shown_as_uncertain_and_sent_again_only_on_purpose(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step)
    bills.wait_thread(one_step, 1)
    interrupt_send(bills, one_step, minutes_ago=5)

    bills.click(FINANCE, ActionId.SEND, one_step)  # a click from before: the message still offers Send

    [refusal] = bills.told(FINANCE)
    assert refusal.startswith(f":warning: Sending of bill #{one_step} is uncertain: fiona started emailing it at ")
    assert f"`/bill send {one_step} again`" in refusal
    bills.settle()
    assert list(bills.slack.settings.mail_dir.glob("*.eml")) == []
    message = bills.message(one_step)  # refreshed by the refusal: the warning, Send again and Mark as sent
    assert f"Sending of bill #{one_step} is uncertain" in texts(message)
    assert set(button_values(message)) == {"Send again", "Mark as sent", "Invoice PDF"}  # the invoice it went out with
    [button] = [element for block in message["blocks"] if block["type"] == "actions" for element in block["elements"]
                if element["text"]["text"] == "Send again"]
    assert button["confirm"]["title"]["text"] == "Send this bill again?"

    bills.click_button(FINANCE, one_step, "Send again")

    _, sent = bills.wait_thread(one_step, 2)
    assert f"<@{FINANCE}> sent bill #{one_step}" in texts(sent)
    assert bills.bill(one_step).status is BillStatus.SENT
    [eml] = list(bills.slack.settings.mail_dir.glob("*.eml"))
    assert message_from_bytes(eml.read_bytes(), policy=policy.default)["Message-ID"] == (
        f"<bill-{one_step}@example.com>"
    )
    bills.settle()
    message = bills.message(one_step)
    assert button_values(message) == {"Invoice PDF": (ActionId.PDF.value, f"bill:{one_step}")}
    assert "uncertain" not in texts(message)


def test_mark_as_sent_records_an_interrupted_send_as_delivered_without_emailing_it(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step)
    bills.wait_thread(one_step, 1)
    interrupt_send(bills, one_step, minutes_ago=5)
    started = timestamp(bills.bill(one_step).sending_started_at)
    bills.click(FINANCE, ActionId.SEND, one_step)  # refused: the message is redrawn with the uncertain send
    bills.told(FINANCE)
    bills.settle()
    [button] = [element for block in bills.message(one_step)["blocks"] if block["type"] == "actions"
                for element in block["elements"] if element["text"]["text"] == "Mark as sent"]
    assert button["confirm"]["title"]["text"] == "Mark this bill as sent?"
    assert "No email will be sent" in button["confirm"]["text"]["text"]

    bills.click_button(FINANCE, one_step, "Mark as sent")

    _, sent = bills.wait_thread(one_step, 2)
    assert texts(sent).startswith(
        f":email: <@{FINANCE}> sent bill #{one_step} (confirmed delivered to billing@acme.example without emailing"
        f" it again; the interrupted send was started by fiona at {started})"
    )
    bill = bills.bill(one_step)
    assert bill.status is BillStatus.SENT and bill.sending_started_at is None
    assert bills.actions(one_step) == [ActionType.DRAFT, ActionType.APPROVE, ActionType.SEND]
    bills.settle()
    assert list(bills.slack.settings.mail_dir.glob("*.eml")) == []
    message = bills.message(one_step)
    assert button_values(message) == {"Invoice PDF": (ActionId.PDF.value, f"bill:{one_step}")}
    assert "uncertain" not in texts(message)
    assert f"*Sent* by <@{FINANCE}> at " in texts(message)
    assert bills.slack.responses(FINANCE)[1:] == []  # nothing to tell: the thread says it


def test_mark_as_sent_on_a_bill_with_no_interrupted_send_is_refused_and_changes_nothing(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step)
    bills.wait_thread(one_step, 1)

    bills.click(FINANCE, ActionId.MARK_SENT, one_step)  # a button from an earlier, uncertain, state
    bills.click(SALES, ActionId.MARK_SENT, one_step)

    assert bills.told(FINANCE) == [f":warning: Bill #{one_step} has no interrupted send to confirm"]
    assert bills.told(SALES) == [":warning: Only Finance can mark a bill as sent"]
    bills.settle()
    assert bills.actions(one_step) == [ActionType.DRAFT, ActionType.APPROVE]
    assert bills.bill(one_step).status is BillStatus.FINAL and len(bills.thread(one_step)) == 1


def test_a_send_on_its_way_is_not_started_twice(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step)
    bills.wait_thread(one_step, 1)
    interrupt_send(bills, one_step, minutes_ago=0)

    bills.click(FINANCE, ActionId.SEND, one_step)

    started = timestamp(bills.bill(one_step).sending_started_at)
    assert bills.told(FINANCE) == [
        f":warning: Bill #{one_step} is being sent by <@{FINANCE}> since {started}; look at it again in a minute"
    ]
    bills.settle()
    assert list(bills.slack.settings.mail_dir.glob("*.eml")) == []
    assert bills.bill(one_step).status is BillStatus.FINAL


# --- clicks that cannot do anything -------------------------------------------------------------------------


def test_a_stale_or_malformed_button_gets_a_clear_message(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step, value=bill_value(999_999))
    bills.click(SALES, ActionId.APPROVE, one_step, value="bill:twelve")
    bills.click(SALES, ActionId.UNDO, one_step, value=bill_value(one_step) + ";undo:x")
    bills.click(SALES, ActionId.REJECT, one_step, value="")

    told = bills.told(SALES, 4)
    assert ":warning: Bill #999999 does not exist" in told
    assert sum("That button is not for a bill any more" in text or "is not a bill number" in text for text in told) == 3
    assert bills.actions(one_step) == [ActionType.DRAFT]


def test_an_unlinked_person_is_told_how_to_link(bills, one_step):
    bills.click(STRANGER, ActionId.APPROVE, one_step)

    [told] = bills.told(STRANGER)
    assert "not linked" in told and "/bill link CODE" in told
    assert bills.actions(one_step) == [ActionType.DRAFT]


def test_two_approvals_at_once_make_one_change_and_the_other_is_told_who_was_first(bills, one_step):
    message = bills.message(one_step)
    bodies = {
        user: block_actions_body(
            user, ActionId.APPROVE.value, bill_value(one_step), message=message,
            response_url=bills.fake.response_url(user),
        )
        for user in (SALES, OTHER_CS)
    }
    barrier = threading.Barrier(2)

    def click(user):
        barrier.wait()
        assert bills.slack.sender.post(bodies[user]).status == 200

    threads = [threading.Thread(target=click, args=(user,)) for user in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    wait_until(lambda: bills.fake.calls("response_url"), 1, "the refusal")
    bill = bills.bill(one_step)
    assert [action.action for action in bill.actions] == [ActionType.DRAFT, ActionType.APPROVE]
    with bills.slack.db() as session:
        winner = session.get(User, bill.actions[-1].stakeholder_id)
    loser = OTHER_CS if winner.slack_user_id == SALES else SALES
    [told] = bills.told(loser)
    assert f"Bill #{one_step} was already approved by <@{winner.slack_user_id}> at" in told
    assert bills.slack.responses(winner.slack_user_id) == []
    assert len(bills.wait_thread(one_step, 1)) == 1
    # The latecomer's Slack shows the bill as it is now: every update of the message shows it FINAL.
    updates = wait_until(lambda: bills.bill_updates(), 2, "both clicks to update the message")
    assert all("FINAL" in texts(update) for update in updates)
    bills.settle()
    assert len(bills.thread(one_step)) == 1


def test_two_undos_from_the_same_message_undo_one_action_only(bills, one_step):
    bills.click(SALES, ActionId.APPROVE, one_step)
    bills.wait_thread(one_step, 1)
    wait_until(lambda: bills.bill_updates(), 1, "the message updated")
    message = bills.message(one_step)
    _, value = button_values(message)["Undo approval"]
    assert value == undo_value(one_step, bills.bill(one_step).actions[-1].id)

    for user in (SALES, FINANCE):
        bills.slack.click(user, ActionId.UNDO.value, value, message=message)

    wait_until(lambda: bills.fake.calls("response_url"), 1, "the refusal")
    bills.wait_thread(one_step, 2)
    bills.settle()
    assert bills.actions(one_step) == [ActionType.DRAFT, ActionType.APPROVE, ActionType.UNDO]
    assert bills.bill(one_step).status is BillStatus.DRAFT
    [told] = [post["text"] for post in bills.fake.calls("response_url")]
    assert "was already undone by <@" in told


# --- Slack failing after the change ---------------------------------------------------------------------


def test_a_slack_failure_after_the_change_is_logged_and_not_shown_as_a_failed_click(bills, one_step, caplog):
    bills.fake.fail("chat.update", "internal_error")

    bills.click(SALES, ActionId.APPROVE, one_step)

    bills.wait_thread(one_step, 1)  # the thread still hears of it
    bills.settle()
    assert bills.bill(one_step).status is BillStatus.FINAL
    assert bills.slack.responses(SALES) == []
    assert any("chat.update" in record.getMessage() and "internal_error" in record.getMessage()
               for record in caplog.records)
    assert not any("xoxb-" in record.getMessage() for record in caplog.records)


def test_a_rate_limited_post_is_retried(bills):
    bills.customer("Acme")
    bills.fake.rate_limit("chat.postMessage", retry_after=1)
    [bill_id] = bills.generate_and_post().values()

    assert bills.bill(bill_id).slack_ts is not None
    posts = [call for call in bills.fake.recorded("chat.postMessage") if "bill_id" in str(call.params.get("metadata"))]
    assert [call.status for call in posts] in ([429, 200], [200])  # the summary may have met the 429 first
    assert len(bills.fake.messages(CHANNEL_ID)) == 2  # the bill and the month's summary, once each


def test_a_bill_without_a_message_is_posted_before_its_thread_reply(bills):
    bills.customer("Acme")
    with bills.slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=None, today=TODAY)
    with bills.slack.db() as session:
        bill_id = session.scalar(select(Bill.id))
    with bills.slack.db() as session:
        workflow.approve(session=session, bill_id=bill_id, actor=bills.sam)
    bills.settle()

    [posted] = bills.bill_posts()
    [reply] = bills.thread(bill_id)
    assert "FINAL" in texts(posted) and "thread_ts" not in posted
    stored = bills.bill(bill_id)
    assert (stored.slack_channel, stored.slack_ts) == (CHANNEL_ID, bills.message(bill_id)["ts"])
    assert reply["thread_ts"] == stored.slack_ts


def test_app_home_is_refreshed_for_every_linked_person_once_per_change(bills, one_step):
    published_before = len(bills.fake.calls("views.publish"))  # posting the bill refreshed Homes already
    with bills.slack.db() as session:
        workflow.approve(session=session, bill_id=one_step, actor=bills.sam)
    bills.settle()

    # Any Home may have listed the bill: Finance, Customer Success and Sales, once each.
    everyone = [FINANCE, CSM, OTHER_CS, SALES]
    assert [call["user_id"] for call in bills.fake.calls("views.publish")[published_before:]] == everyone
    assert "No bills are waiting" in str(bills.fake.home_view(SALES)["blocks"])


# --- as served -------------------------------------------------------------------------------------


def test_the_served_app_applies_clicks_and_refusals_in_its_worker_process(make_slack):
    bills = Bills(make_slack())
    bills.customer("Acme")
    acme = bills.generate_and_post()["Acme"]

    bills.click(SALES, ActionId.APPROVE, acme)  # answered at once; applied by the worker process
    [reply] = wait_until(lambda: bills.thread(acme), 1, "the approval in the thread", timeout=60)
    assert f"<@{SALES}> approved bill #{acme}" in texts(reply)
    assert bills.bill(acme).status is BillStatus.FINAL

    bills.click(SALES, ActionId.SEND, acme)
    [refusal] = wait_until(lambda: bills.slack.responses(SALES), 1, "the refusal", timeout=30)
    assert refusal["text"] == ":warning: Only Finance can send bills"
    assert bills.actions(acme) == [ActionType.DRAFT, ActionType.APPROVE]
    assert_every_payload_valid(bills.fake)
