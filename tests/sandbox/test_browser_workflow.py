"""The bill workflow on the sandbox page in headless Chromium, each step taken as the person whose job it is,
each outcome read off the page without reloading it. Each test works on bills of its own from the demo data."""

from __future__ import annotations

import re

from playwright.sync_api import expect

expect.set_options(timeout=20_000)

# Approvers get their reminder as soon as the demo starts: the schedule's latest occurrence was missed.
DEMO_ENVIRONMENT = {"REMINDER_CRON": "* * * * *", "REMINDER_AFTER_DAYS": "0"}


def test_finance_generates_last_month_and_watches_its_bills_arrive(slack, months):
    slack.open("Fiona")
    month = months["P"].label
    expect(slack.page.locator("#messages .b-header", has_text=month)).to_have_count(0)

    slack.type("/bill generate")

    answer = slack.ephemeral(f"{month}: 6 bills created")
    expect(answer).to_contain_text("Only visible to you")
    summary = slack.page.locator("#messages .msg.message", has_text=f"{month}: 6 bills created")
    expect(summary).to_contain_text("All 6 bills are posted")
    expect(slack.page.locator("#messages .msg.message .b-header", has_text=month)).to_have_count(6)
    expect(slack.bill("Acme Analytics", months["P"])).to_contain_text("DRAFT")


def test_a_two_step_bill_is_approved_by_the_csm_then_by_sales(slack, months):
    slack.open("Carol")
    bill = slack.bill("Stark Mobility", months["P-1"])
    expect(bill).to_contain_text("step 1 of 2")

    bill.locator("button", has_text="Approve").click()

    expect(bill).to_contain_text("approved by @carol")  # step 1 is done; the message changed in place
    expect(bill).to_contain_text("DRAFT")
    slack.act_as("Sam")
    bill.locator("button", has_text="Approve").click()
    expect(bill).to_contain_text("FINAL")
    expect(bill).to_contain_text("approved by @sam")
    expect(bill.locator("button", has_text="Send")).to_be_visible()
    expect(bill.locator(".thread-link button")).to_have_text(re.compile(r"\d+ replies"))


def test_a_bill_is_rejected_with_a_reason_given_in_the_modal(slack, months, screenshots):
    slack.open("Carol")
    bill = slack.bill("Hooli Search", months["P-1"])
    reason = "Customer disputes the spike; agreed with Sales to waive it."

    bill.locator("button", has_text="Reject").click()
    modal = slack.page.locator("#modal-overlay .modal")
    expect(modal.locator(".modal-header")).to_contain_text("Reject")
    modal.locator("button[type=submit]").click()  # no reason yet
    expect(modal.locator(".b-input .error")).to_have_text("Please fill out this field.")
    modal.locator("textarea").fill(reason)
    expect(modal.locator(".b-input .error")).to_be_hidden()
    slack.shot(screenshots, "modal")
    modal.locator("button[type=submit]").click()

    expect(modal).to_have_count(0)
    expect(bill).to_contain_text("WRITEOFF")
    expect(bill).to_contain_text(reason)
    expect(bill.locator("button", has_text="Undo")).to_be_visible()
    bill.locator(".thread-link button").click()
    expect(slack.page.locator("#thread .msg").last).to_contain_text(reason)


def test_a_rejection_is_undone_by_the_person_who_rejected(slack, months):
    slack.open("Casey")
    bill = slack.bill("Initech Payments", months["P-1"])
    expect(bill).to_contain_text("WRITEOFF")

    bill.locator("button", has_text="Undo").click()

    expect(bill).to_contain_text("DRAFT")
    expect(bill.locator("button", has_text="Approve")).to_be_visible()
    expect(bill.locator("button", has_text="Undo")).to_have_count(0)


def test_finance_sends_an_approved_bill_after_confirming(slack, months):
    slack.open("Fiona")
    bill = slack.bill("Globex Logistics", months["P-1"])
    expect(bill).to_contain_text("FINAL")

    bill.locator("button", has_text="Send").click()
    dialog = slack.page.locator("#confirm-overlay .modal")
    expect(dialog).to_contain_text("billing@globex.example.com")
    dialog.locator("button", has_text="Cancel").click()
    expect(bill).to_contain_text("FINAL")  # cancelled: nothing was sent
    bill.locator("button", has_text="Send").click()
    dialog.locator("button.primary", has_text="Send").click()

    expect(bill).to_contain_text("SENT")
    expect(bill.locator("button.sk-btn", has_text=re.compile(r"^(Approve|Reject|Send)$"))).to_have_count(0)
    assert list((slack.demo.folder / "mail").glob("bill-*.eml")), "no email was written"


def test_a_click_the_person_may_not_make_is_refused_with_its_reason(slack, months):
    slack.open("Casey")  # Customer Success, but the bill waits for Sales
    bill = slack.bill("Acme Analytics", months["P-1"])
    expect(bill).to_contain_text("step 2 of 2")

    bill.locator("button", has_text="Approve").click()

    refusal = slack.page.locator("#messages .msg.ephemeral", has_text="⚠️")
    expect(refusal).to_contain_text("Sales")
    expect(refusal).to_contain_text("Only visible to you")
    expect(bill).to_contain_text("DRAFT")
    slack.act_as("Vera")  # not linked to any account
    slack.bill("Acme Analytics", months["P-1"]).locator("button", has_text="Approve").click()
    expect(slack.page.locator("#messages .msg.ephemeral", has_text="/bill link")).to_be_visible()
    expect(bill).to_contain_text("DRAFT")


def test_an_export_and_a_chart_arrive_in_the_direct_messages(slack, months):
    slack.open("Fiona")

    slack.type(f"/bill export {months['P-1']}")
    slack.type("/bill customer Acme Analytics")

    expect(slack.ephemeral(f"bills-{months['P-1']}.csv")).to_be_visible()
    expect(slack.page.locator("#app-badge")).to_have_text("2")  # two direct messages, unread
    slack.open_app("messages")
    export = slack.page.locator("#messages .file-card", has_text=f"bills-{months['P-1']}.csv")
    expect(export).to_contain_text(f"Bills for {months['P-1'].label}")
    chart = slack.page.locator("#messages .file-image img")
    expect(chart).to_be_visible()
    assert chart.evaluate("image => image.naturalWidth") > 200  # the PNG itself, not a broken image
    expect(slack.page.locator("#app-badge")).to_be_hidden()


def test_an_approver_finds_the_reminder_of_what_waits_for_them_in_the_direct_messages(slack, months):
    slack.open("Sam")

    slack.open_app("messages")

    reminder = slack.page.locator("#messages .msg.message", has_text="waiting for your approval")
    expect(reminder.locator(".b-header")).to_contain_text("🔔")
    expect(reminder).to_contain_text("Acme Analytics")  # its step 2 waits for Sales
    expect(reminder.locator("button.sk-btn.primary", has_text="Approve").first).to_be_visible()
