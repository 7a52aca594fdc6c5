"""The sandbox page in headless Chromium, read as a person reads Slack: the bills channel, a bill's thread,
each role's App Home, and Block Kit the page cannot draw or Slack refuses. (Changing bills:
test_browser_workflow.py.)"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.slack import CHANNEL_ID, TOKEN

expect.set_options(timeout=20_000)
WORKFLOW_BUTTON = re.compile(r"^(Approve|Reject|Send)$")


def test_the_channel_shows_each_bill_as_a_message_with_its_status_and_buttons(slack, months, screenshots):
    slack.open("Fiona")

    sent, written_off = slack.bill("Acme Analytics", months["P-2"]), slack.bill("Umbrella Health", months["P-2"])
    approved, waiting = slack.bill("Globex Logistics", months["P-1"]), slack.bill("Stark Mobility", months["P-1"])
    expect(sent).to_contain_text("SENT")
    expect(written_off).to_contain_text("WRITEOFF")
    expect(written_off).to_contain_text("The spike came from our own outage retries")  # the rejection's reason
    expect(approved).to_contain_text("FINAL")
    expect(waiting).to_contain_text("DRAFT")
    # Buttons are buttons, in Slack's colours: Approve green, Reject red; a sent bill has none.
    expect(waiting.locator("button.sk-btn.primary", has_text="Approve")).to_be_visible()
    expect(waiting.locator("button.sk-btn.danger", has_text="Reject")).to_be_visible()
    expect(approved.locator("button.sk-btn.primary", has_text="Send")).to_be_visible()
    expect(sent.locator("button.sk-btn", has_text=WORKFLOW_BUTTON)).to_have_count(0)  # nothing left to decide
    # mrkdwn: @-mentions by name, bold field names, emoji shown as emoji.
    expect(waiting.locator(".mention", has_text="@sam")).to_be_visible()
    expect(waiting.locator("b", has_text="Customer")).to_be_visible()
    expect(waiting).to_contain_text("⏳")
    expect(sent.locator(".thread-link")).to_contain_text("replies")
    slack.shot(screenshots, "channel")


def test_a_bills_thread_is_its_history(slack, months, screenshots):
    slack.open("Carol")
    bill = slack.bill("Wayne Media", months["P-2"])

    bill.locator(".thread-link button").click()

    thread = slack.page.locator("#thread")
    expect(thread.locator(".b-header")).to_contain_text("Wayne Media")
    replies = thread.locator(".msg").filter(has_not=slack.page.locator(".b-header"))
    expect(replies).to_have_count(3)  # edited by Finance, approved, sent
    expect(replies.nth(0)).to_contain_text("edited")
    expect(replies.nth(0).locator(".mention", has_text="@fiona")).to_be_visible()
    expect(replies.nth(1)).to_contain_text("approved")
    expect(replies.nth(1).locator(".mention.me", has_text="@carol")).to_be_visible()  # the reader, highlighted
    expect(replies.nth(2)).to_contain_text("sent")
    expect(thread.locator(".replies-rule")).to_have_text("3 replies")
    slack.shot(screenshots, "thread")


@pytest.mark.parametrize(
    ("person", "header", "shows"),
    [
        ("Fiona", "BillProcess — Finance", "waiting to be sent"),
        ("Carol", "BillProcess — Customer Success", "Waiting for you"),
        ("Casey", "BillProcess — Customer Success", "Waiting for you"),
        ("Sam", "BillProcess — Sales", "Waiting for you"),
        ("Vera", None, "/bill link"),
    ],
)
def test_each_person_sees_their_own_app_home(slack, screenshots, person, header, shows):
    slack.open(person)

    slack.open_app("home")

    home = slack.page.locator("#home")
    if header:
        expect(home.locator(".b-header").first).to_have_text(header)
    expect(home).to_contain_text(shows)
    if person in ("Carol", "Sam"):
        expect(home.locator("button.sk-btn.primary", has_text="Approve").first).to_be_visible()
    if person == "Carol":
        slack.shot(screenshots, "home")


def test_block_kit_the_page_cannot_draw_is_marked_and_block_kit_slack_refuses_is_shown_as_an_error(slack, demo):
    slack.open("Fiona")
    client = WebClient(base_url=f"{demo.url}/api/", token=TOKEN)
    video = {"type": "video", "title": {"type": "plain_text", "text": "Demo"}, "video_url": "https://example.com/v",
             "thumbnail_url": "https://example.com/t.png", "alt_text": "a video"}
    picker = {"type": "actions", "elements": [{"type": "datepicker", "action_id": "day"}]}
    formatted = {"type": "section", "text": {"type": "mrkdwn", "text": (
        "*bold* _italic_ ~struck~ `code` <https://example.com|a link> <#C0BILLS01> <@U0SAM0001> :tada:"
        " <!date^1700000000^{date_num}|13 Nov> :no_such_emoji:")}}

    client.chat_postMessage(channel=CHANNEL_ID, text="odd blocks", blocks=[video, picker, formatted])
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel=CHANNEL_ID, text="too long", blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}])

    odd = slack.page.locator("#messages .msg.message", has_text="Unsupported block")
    expect(odd.locator(".unsupported[data-unsupported=video]")).to_contain_text("Unsupported block: video")
    expect(odd.locator(".unsupported[data-unsupported=datepicker]")).to_contain_text("Unsupported element: datepicker")
    expect(odd.locator("b", has_text="bold")).to_be_visible()
    expect(odd.locator("i", has_text="italic")).to_be_visible()
    expect(odd.locator("s", has_text="struck")).to_be_visible()
    expect(odd.locator("code", has_text="code")).to_be_visible()
    expect(odd.locator("a[href='https://example.com']")).to_have_text("a link")
    expect(odd.locator(".channel-link")).to_have_text("#bills")
    expect(odd.locator(".mention")).to_have_text("@sam")
    expect(odd).to_contain_text("🎉")
    expect(odd).to_contain_text("2023-11-14")
    expect(odd).to_contain_text(":no_such_emoji:")  # an emoji the page does not know stays as its shortcode
    refusal = slack.page.locator("#messages .msg.refusal")
    expect(refusal).to_contain_text("Invalid Block Kit: Slack refused chat.postMessage")
    expect(refusal).to_contain_text("block 1 (section): text attribute cannot exceed 3000 characters")
    assert "invalid Block Kit: block 1 (section): text attribute cannot exceed 3000 characters" in demo.output()
