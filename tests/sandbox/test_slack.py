"""The Slack fakes behave like Slack for the real slack_sdk client and the real Bolt app."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from sandbox.app_requests import (
    SlackSender,
    app_home_opened_event,
    block_actions_body,
    event_body,
    sign,
    slash_command_body,
    text_input_state,
    url_verification_body,
    view_submission_body,
)
from sandbox.slack import APP_TOKEN, SIGNING_SECRET, TOKEN, FakeSlack
from tests.slack_helpers import serve_wsgi

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*Acme* 2024-05"}}
HOME = {"type": "home", "blocks": [SECTION]}
MODAL = {"type": "modal", "title": {"type": "plain_text", "text": "Reject"}, "blocks": [SECTION]}
BILL_METADATA = {"event_type": "bill_posted", "event_payload": {"bill_id": 7, "version": 3}}


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def client(fake) -> WebClient:
    return WebClient(base_url=fake.url, token=TOKEN)


# --- the Web API fake, driven by slack_sdk ---------------------------------------------------


def test_url_is_an_api_base_url(fake):
    assert fake.url.startswith("http://127.0.0.1:") and fake.url.endswith("/api/")


def test_post_message_returns_increasing_ts_and_is_recorded_with_blocks(fake, client):
    first = client.chat_postMessage(channel="C1", text="bill", blocks=[SECTION])
    second = client.chat_postMessage(channel="C1", text="reply", thread_ts=first["ts"])

    assert first["channel"] == "C1" and first["message"]["blocks"] == [SECTION]
    assert float(second["ts"]) > float(first["ts"])
    posted = fake.calls("chat.postMessage")
    assert posted[0]["blocks"] == [SECTION]
    assert posted[1]["thread_ts"] == first["ts"]
    assert fake.recorded("chat.postMessage")[0].authorization == f"Bearer {TOKEN}"


def test_form_encoded_params_are_parsed_like_json(fake, client):
    client.api_call("chat.postMessage", data={"channel": "C1", "blocks": json.dumps([SECTION])})

    assert fake.last("chat.postMessage") == {"channel": "C1", "blocks": [SECTION]}


def test_chat_update_changes_the_stored_message_in_place(fake, client):
    posted = client.chat_postMessage(channel="C1", text="waiting")
    client.chat_update(channel="C1", ts=posted["ts"], text="approved", blocks=[SECTION])

    [message] = fake.messages("C1")
    assert (message["ts"], message["text"], message["blocks"]) == (posted["ts"], "approved", [SECTION])


def test_message_to_a_user_lands_in_the_bots_dm_with_them(fake, client):
    opened = client.conversations_open(users="U1")
    posted = client.chat_postMessage(channel="U1", text="reminder")

    assert opened["channel"]["id"] == posted["channel"] == fake.dm_channel("U1")
    assert fake.dm_channel("U2") != fake.dm_channel("U1")


def test_message_limits_are_enforced(client):
    with pytest.raises(SlackApiError) as too_many:
        client.chat_postMessage(channel="C1", text="x", blocks=[SECTION] * 51)
    with pytest.raises(SlackApiError) as empty, pytest.warns(UserWarning, match="`text` argument"):
        client.chat_postMessage(channel="C1")

    assert too_many.value.response["error"] == "invalid_blocks"
    assert empty.value.response["error"] == "no_text"


def test_ephemeral_and_permalink(client):
    ephemeral = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    link = client.chat_getPermalink(channel="C1", message_ts="1700000000.000100")

    assert ephemeral["message_ts"]
    assert link["permalink"].endswith("/archives/C1/p1700000000000100")


def test_users_info_returns_registered_users_only(fake, client):
    fake.add_user("U123", email="ann@example.com", name="ann", real_name="Ann Lee")

    user = client.users_info(user="U123")["user"]
    with pytest.raises(SlackApiError) as unknown:
        client.users_info(user="U999")

    assert (user["id"], user["profile"]["email"], user["real_name"]) == ("U123", "ann@example.com", "Ann Lee")
    assert unknown.value.response["error"] == "user_not_found"


def test_views_open_update_and_publish(fake, client):
    opened = client.views_open(trigger_id="1.2.abc", view=MODAL)["view"]
    updated = client.views_update(view_id=opened["id"], view={**MODAL, "private_metadata": "bill:7"})["view"]
    home = client.views_publish(user_id="U1", view=HOME)["view"]
    republished = client.views_publish(user_id="U1", view=HOME)["view"]

    assert opened["id"].startswith("V") and updated["id"] == opened["id"]
    assert fake.view(opened["id"])["private_metadata"] == "bill:7"
    assert republished["id"] == home["id"] and fake.home_view("U1")["blocks"] == [SECTION]


def test_views_need_a_trigger_and_a_short_title(client):
    with pytest.raises(SlackApiError) as no_trigger:
        client.views_open(trigger_id="", view=MODAL)
    long_title = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    with pytest.raises(SlackApiError) as too_long:
        client.views_open(trigger_id="1.2.abc", view=long_title)

    assert no_trigger.value.response["error"] == too_long.value.response["error"] == "invalid_arguments"


def test_files_upload_v2_stores_the_bytes(fake, client):
    content = b"bill_id,amount\n1,12.50\n"

    result = client.files_upload_v2(content=content, filename="bills-2024-05.csv", title="May", channel="C1")

    file_id = result["file"]["id"]
    assert fake.uploads == {file_id: content}
    assert result["file"]["title"] == "May"
    assert fake.methods_called() == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert fake.last("files.completeUploadExternal")["channel_id"] == "C1"


def test_rate_limited_call_is_retried_after_retry_after(fake):
    retry = RateLimitErrorRetryHandler(max_retry_count=1)
    client = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[retry])
    fake.rate_limit("chat.update", retry_after=1)

    client.chat_update(channel="C1", ts="1700000000.000100", text="approved")

    first, second = fake.recorded("chat.update")
    assert (first.status, first.error, second.status) == (429, "ratelimited", 200)
    assert second.at - first.at >= 1


def test_rate_limit_without_a_retry_handler_raises_with_retry_after(fake, client):
    fake.rate_limit("chat.postMessage", retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="x")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"


def test_fail_makes_the_call_raise_the_given_number_of_times(fake, client):
    fake.fail("chat.postMessage", error="channel_not_found", times=1)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="x")
    client.chat_postMessage(channel="C1", text="x")

    assert raised.value.response["error"] == "channel_not_found"
    assert [call.error for call in fake.recorded("chat.postMessage")] == ["channel_not_found", None]


def test_wrong_or_missing_token_is_rejected(fake):
    with pytest.raises(SlackApiError) as wrong:
        WebClient(base_url=fake.url, token="xoxb-wrong").auth_test()
    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=fake.url).auth_test()

    assert wrong.value.response["error"] == "invalid_auth"
    assert missing.value.response["error"] == "not_authed"


def test_unknown_method(client):
    with pytest.raises(SlackApiError) as raised:
        client.api_call("bills.approve")

    assert raised.value.response["error"] == "unknown_method"


def test_response_url_posts_are_recorded_by_name(fake):
    url = fake.response_url("bill-7")

    WebhookClient(url).send(text="Approved", response_type="in_channel", replace_original=False)

    assert fake.response_url_posts("bill-7") == [
        {"text": "Approved", "response_type": "in_channel", "replace_original": False}
    ]
    assert fake.response_url_posts("other") == []


def test_wait_for_sees_calls_made_later_in_another_thread(fake, client):
    later = threading.Timer(0.2, lambda: client.chat_postMessage(channel="C1", text="late"))
    later.start()

    [posted] = fake.wait_for("chat.postMessage", timeout=5)

    assert posted["text"] == "late"
    later.join()


def test_wait_for_times_out_with_what_was_recorded(fake, client):
    client.auth_test()

    with pytest.raises(AssertionError, match=r"chat.update.*auth.test"):
        fake.wait_for("chat.update", timeout=0.2)


def test_delay_holds_the_answer(fake, client):
    fake.delay("views.open", seconds=0.3)
    started = time.monotonic()

    client.views_open(trigger_id="1.2.abc", view=MODAL)

    assert time.monotonic() - started >= 0.3


# --- failures as Slack has them ------------------------------------------------------------------


class InThread:
    """A call made in another thread: whether it finished, and what it returned or raised."""

    def __init__(self, call):
        self._done = threading.Event()
        self._value = self._error = None
        threading.Thread(target=self._run, args=(call,), daemon=True).start()

    def _run(self, call) -> None:
        try:
            self._value = call()
        except Exception as error:  # handed to the test by result()
            self._error = error
        self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float):
        assert self._done.wait(timeout), "the call did not finish"
        if self._error is not None:
            raise self._error
        return self._value


def test_delay_of_zero_releases_a_held_answer_at_once(fake, client):
    fake.delay("views.open", seconds=60)
    opening = InThread(lambda: client.views_open(trigger_id="1.2.abc", view=MODAL))
    fake.wait_for("views.open")

    fake.delay("views.open", 0)

    assert opening.result(timeout=5)["ok"]


def test_server_error_answers_slacks_error_page_and_does_nothing(fake, client):
    fake.server_error("chat.postMessage", 503, times=2)

    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel="C1", text="bill")
        assert raised.value.response.status_code == 503
    client.chat_postMessage(channel="C1", text="bill")

    assert [(call.status, call.error) for call in fake.recorded("chat.postMessage")] == [
        (503, "http_503"), (503, "http_503"), (200, None)
    ]
    assert raised.value.response.headers["Content-Type"].startswith("text/html")
    assert len(fake.messages("C1")) == 1


def test_server_errors_last_until_cleared_and_a_retrying_client_gets_through(fake):
    fake.server_error("chat.update", 500, times=None)
    retrying = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)])

    with pytest.raises(SlackApiError):
        retrying.chat_update(channel="C1", ts="1700000000.000100", text="approved")
    assert [call.status for call in fake.recorded("chat.update")] == [500, 500]

    fake.server_error("chat.update", 502, times=1)
    fake.clear_faults("chat.update")
    retrying.chat_update(channel="C1", ts="1700000000.000100", text="approved")
    assert fake.recorded("chat.update")[-1].status == 200

    with pytest.raises(ValueError):
        fake.server_error("chat.update", 404)


def test_a_hang_holds_only_its_own_answer_until_released(fake, client):
    fake.hang("chat.postMessage", times=1)
    hung = InThread(lambda: client.chat_postMessage(channel="C1", text="first"))
    fake.wait_for("chat.postMessage")

    client.auth_test()
    second = client.chat_postMessage(channel="C1", text="second")
    assert not hung.done() and second["ok"]

    fake.delay("chat.postMessage", 0)
    assert hung.result(timeout=5)["ts"] == fake.messages("C1")[0]["ts"]


def test_a_hang_past_the_clients_timeout_leaves_the_outcome_unknown(fake):
    impatient = WebClient(base_url=fake.url, token=TOKEN, timeout=0.3, retry_handlers=[])
    fake.hang("chat.postMessage")

    with pytest.raises(OSError):
        impatient.chat_postMessage(channel="C1", text="bill")

    assert [m["text"] for m in fake.messages("C1")] == ["bill"]  # Slack posted it; the client cannot know
    fake.clear_faults()
    assert impatient.chat_postMessage(channel="C1", text="again")["ok"]


def test_a_lost_answer_posts_the_message_but_the_client_sees_a_server_error(fake, client):
    fake.lose_answer("chat.postMessage", 500)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="bill", metadata=BILL_METADATA)

    assert raised.value.response.status_code == 500
    [posted] = fake.messages("C1")
    assert posted["metadata"] == BILL_METADATA and fake.post_counts() == {"C1": 1}
    assert [(call.status, call.error) for call in fake.recorded("chat.postMessage")] == [(500, "http_500")]
    client.chat_postMessage(channel="C1", text="next")
    assert fake.recorded("chat.postMessage")[-1].status == 200


def test_a_lost_answer_can_be_a_connection_closed_without_an_answer(fake):
    no_retries = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[])
    fake.lose_answer("chat.postMessage", None)

    with pytest.raises(OSError):
        no_retries.chat_postMessage(channel="C1", text="bill")

    assert [m["text"] for m in fake.messages("C1")] == ["bill"]
    assert [(call.status, call.error) for call in fake.recorded("chat.postMessage")] == [(0, "connection_closed")]


def test_a_lost_answer_waits_for_a_call_that_succeeds(fake, client):
    fake.lose_answer("chat.postMessage", 502)

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C1", text="x" * 40_001)
    with pytest.raises(SlackApiError) as lost:
        client.chat_postMessage(channel="C1", text="bill")

    assert refused.value.response["error"] == "msg_too_long"
    assert lost.value.response.status_code == 502 and len(fake.messages("C1")) == 1


class _Clock:
    """A monotonic clock that a test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_posting_limit_is_per_channel_with_a_burst_and_a_whole_second_retry_after():
    clock = _Clock()
    with FakeSlack(post_rate=0.25, post_burst=2, clock=clock) as fake:
        client = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[])
        first = client.chat_postMessage(channel="C1", text="1")
        client.chat_postMessage(channel="C1", text="reply", thread_ts=first["ts"])  # replies count too

        def refused_retry_after() -> str:
            with pytest.raises(SlackApiError) as raised:
                client.chat_postMessage(channel="C1", text="over")
            assert (raised.value.response.status_code, raised.value.response["error"]) == (429, "ratelimited")
            return raised.value.response.headers["Retry-After"]

        assert refused_retry_after() == "4"  # one message per 4 s at 0.25/s
        client.chat_postMessage(channel="C2", text="other channel")
        clock.now += 1
        assert refused_retry_after() == "3"
        clock.now += 2.5
        assert refused_retry_after() == "1"  # 0.5 s to go, in whole seconds
        clock.now += 0.5
        client.chat_postMessage(channel="C1", text="2")

        assert [m["text"] for m in fake.messages("C1")] == ["1", "reply", "2"]
        assert fake.post_counts() == {"C1": 3, "C2": 1}
        assert [call.status for call in fake.recorded("chat.postMessage")].count(429) == 3


def test_posting_limit_can_be_set_later_and_lifted(fake, client):
    fake.limit_posts(rate=1.0, burst=1)
    client.chat_postMessage(channel="C1", text="1")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="2")

    fake.limit_posts(None)

    client.chat_postMessage(channel="C1", text="2")
    assert fake.post_counts() == {"C1": 2}
    with pytest.raises(ValueError):
        fake.limit_posts(rate=0)


def test_a_rate_limited_post_is_retried_by_slack_sdk_after_retry_after():
    with FakeSlack(post_rate=10.0, post_burst=1) as fake:
        retry = RateLimitErrorRetryHandler(max_retry_count=1)
        client = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[retry])

        client.chat_postMessage(channel="C1", text="1")
        client.chat_postMessage(channel="C1", text="2")

        first, limited, retried = fake.recorded("chat.postMessage")
        assert (limited.status, retried.status) == (429, 200)
        assert retried.at - limited.at >= 1
        assert fake.post_counts() == {"C1": 2}


# --- what was posted, read back ------------------------------------------------------------------


def test_history_lists_top_level_messages_newest_first_with_metadata_only_when_asked(fake, client):
    bill = client.chat_postMessage(channel="C1", text="bill 7", metadata=BILL_METADATA)
    client.chat_postMessage(channel="C1", text="approved", thread_ts=bill["ts"])
    client.chat_postMessage(channel="C1", text="bill 8")
    client.chat_postMessage(channel="C2", text="elsewhere")

    plain = client.conversations_history(channel="C1")["messages"]
    with_metadata = client.conversations_history(channel="C1", include_all_metadata=True)["messages"]

    assert [m["text"] for m in plain] == ["bill 8", "bill 7"]
    assert all("metadata" not in m for m in plain)
    assert with_metadata[1]["metadata"] == BILL_METADATA and "metadata" not in with_metadata[0]
    assert (plain[1]["reply_count"], plain[1]["thread_ts"]) == (1, bill["ts"])


def test_history_pages_with_a_cursor_and_honours_oldest_and_latest(fake, client):
    ts = [client.chat_postMessage(channel="C1", text=str(n))["ts"] for n in range(5)]

    pages, cursor = [], None
    while True:
        answer = client.conversations_history(channel="C1", limit=2, cursor=cursor)
        pages.append([m["text"] for m in answer["messages"]])
        cursor = answer["response_metadata"]["next_cursor"]
        assert answer["has_more"] == bool(cursor)
        if not cursor:
            break
    between = client.conversations_history(channel="C1", oldest=ts[1], latest=ts[3])["messages"]
    inclusive = client.conversations_history(channel="C1", oldest=ts[1], latest=ts[3], inclusive=True)["messages"]

    assert pages == [["4", "3"], ["2", "1"], ["0"]]
    assert [m["text"] for m in between] == ["2"]
    assert [m["text"] for m in inclusive] == ["3", "2", "1"]
    with pytest.raises(SlackApiError) as bad_cursor:
        client.conversations_history(channel="C1", cursor="not a cursor")
    assert bad_cursor.value.response["error"] == "invalid_cursor"


def test_replies_give_the_parent_then_its_replies_oldest_first(fake, client):
    bill = client.chat_postMessage(channel="C1", text="bill 7")
    other = client.chat_postMessage(channel="C1", text="bill 8")
    approved = client.chat_postMessage(channel="C1", text="approved", thread_ts=bill["ts"], metadata=BILL_METADATA)
    client.chat_postMessage(channel="C1", text="other reply", thread_ts=other["ts"])
    sent = client.chat_postMessage(channel="C1", text="sent", thread_ts=bill["ts"])

    thread = client.conversations_replies(channel="C1", ts=bill["ts"])["messages"]
    from_a_reply = client.conversations_replies(channel="C1", ts=sent["ts"], include_all_metadata=True)["messages"]
    after_approval = client.conversations_replies(channel="C1", ts=bill["ts"], oldest=approved["ts"])["messages"]

    assert [m["text"] for m in thread] == ["bill 7", "approved", "sent"]
    assert "metadata" not in thread[1] and from_a_reply[1]["metadata"] == BILL_METADATA
    assert [m["text"] for m in after_approval] == ["bill 7", "sent"]
    assert [m["ts"] for m in fake.thread_replies("C1", bill["ts"])] == [approved["ts"], sent["ts"]]
    with pytest.raises(SlackApiError) as unknown:
        client.conversations_replies(channel="C1", ts="1600000000.000100")
    assert unknown.value.response["error"] == "thread_not_found"


def test_replies_to_a_message_posted_before_the_fake_started_are_found(client):
    earlier = "1600000000.000100"  # a bill message from before this fake ran
    client.chat_postMessage(channel="C1", text="approved", thread_ts=earlier)

    [reply] = client.conversations_replies(channel="C1", ts=earlier)["messages"]

    assert (reply["text"], reply["thread_ts"]) == ("approved", earlier)


def test_a_message_to_a_user_is_read_back_from_their_dm_channel(fake, client):
    client.chat_postMessage(channel="U1", text="3 bills wait for you", metadata=BILL_METADATA)

    [reminder] = client.conversations_history(channel=fake.dm_channel("U1"), include_all_metadata=True)["messages"]
    with pytest.raises(SlackApiError) as by_user_id:
        client.conversations_history(channel="U1")

    assert (reminder["text"], reminder["metadata"]) == ("3 bills wait for you", BILL_METADATA)
    assert by_user_id.value.response["error"] == "channel_not_found"
    assert fake.post_counts() == {fake.dm_channel("U1"): 1}


def test_metadata_must_have_slacks_shape_and_an_update_keeps_it(fake, client):
    with pytest.raises(SlackApiError) as malformed:
        client.chat_postMessage(channel="C1", text="bill", metadata={"event_type": "bill_posted"})
    posted = client.chat_postMessage(channel="C1", text="bill", metadata=BILL_METADATA)
    client.chat_update(channel="C1", ts=posted["ts"], text="approved")

    assert malformed.value.response["error"] == "invalid_metadata_format"
    [message] = fake.messages("C1")
    assert (message["text"], message["metadata"]) == ("approved", BILL_METADATA)


def test_each_method_needs_its_scope():
    with FakeSlack(scopes="chat:write,im:history") as fake:
        client = WebClient(base_url=fake.url, token=TOKEN)
        client.chat_postMessage(channel="U1", text="hello")
        assert client.conversations_history(channel=fake.dm_channel("U1"))["messages"]

        with pytest.raises(SlackApiError) as missing:
            client.conversations_history(channel="C1")
        with pytest.raises(SlackApiError) as no_users_read:
            client.users_info(user="U1")

    assert (missing.value.response["error"], missing.value.response["needed"]) == ("missing_scope", "channels:history")
    assert no_users_read.value.response["needed"] == "users:read"


def test_socket_mode_url_needs_the_app_level_token(fake, client):
    url = client.apps_connections_open(app_token=APP_TOKEN)["url"]

    assert url.startswith("ws://127.0.0.1:") and "/link/?ticket=" in url
    for token, error in [("xapp-1-wrong", "invalid_auth"), (TOKEN, "not_allowed_token_type")]:
        with pytest.raises(SlackApiError) as refused:
            client.apps_connections_open(app_token=token)
        assert refused.value.response["error"] == error
    with pytest.raises(SlackApiError) as app_token_for_the_bot:
        WebClient(base_url=fake.url, token=APP_TOKEN).auth_test()
    assert app_token_for_the_bot.value.response["error"] == "not_allowed_token_type"


def test_reset_forgets_calls_but_keeps_users(fake, client):
    fake.add_user("U1", email="a@example.com")
    client.chat_postMessage(channel="C1", text="x")

    fake.reset()

    assert fake.recorded() == [] and fake.messages() == []
    assert client.users_info(user="U1")["user"]["profile"]["email"] == "a@example.com"


# --- signatures --------------------------------------------------------------------------------


def test_sign_matches_slack_sdk_signature_verifier():
    body = slash_command_body("list", "U1")
    headers = sign(body, SIGNING_SECRET)
    verifier = SignatureVerifier(SIGNING_SECRET)

    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body.replace("list", "send+7"), headers)
    assert not verifier.is_valid_request(body, sign(body, SIGNING_SECRET, timestamp=int(time.time()) - 360))
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sign(event_body({"type": "x"}), SIGNING_SECRET)["Content-Type"] == "application/json"


# --- the builders, checked against a real Bolt app ---------------------------------------------


@pytest.fixture
def bolt(fake) -> Iterator[tuple[SlackSender, dict]]:
    """A minimal Bolt app served over HTTP, using the fake as its Web API; yields (sender, seen)."""
    seen: dict = {}
    # With `client=` Bolt takes the token from the client (and warns if token= is also given).
    app = App(signing_secret=SIGNING_SECRET, client=WebClient(base_url=fake.url, token=TOKEN))

    @app.command("/bill")
    def bill(ack, command, respond, client, context, request):
        seen["command"], seen["retry_num"] = command, request.headers.get("x-slack-retry-num")
        seen["bot_user_id"] = context.bot_user_id
        ack(f"working on {command['text']}")
        respond(text="done")
        client.chat_postMessage(channel=command["channel_id"], text=command["text"])

    @app.action("approve")
    def approve(ack, body, action, client):
        seen["action"] = action
        ack()
        client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], text="approved")

    @app.view("reject_reason")
    def reject(ack, view):
        seen["view"] = view
        ack(response_action="errors", errors={"reason": "say why"})

    @app.event("app_home_opened")
    def home(event, client):
        client.views_publish(user_id=event["user"], view=HOME)

    with serve_wsgi(SlackRequestHandler(app)) as base_url:
        yield SlackSender(base_url, SIGNING_SECRET), seen


def test_bolt_accepts_a_signed_slash_command(fake, bolt):
    sender, seen = bolt
    body = slash_command_body("list 2024-05", "U1", response_url=fake.response_url("cmd"))

    response = sender.post(body)

    assert (response.status, response.body) == (200, "working on list 2024-05")
    [posted] = fake.wait_for("chat.postMessage")
    # Bolt's per-request client adds the team_id of the request to every call.
    assert posted == {"channel": "C0BILLS01", "text": "list 2024-05", "team_id": "T0BILLS01"}
    assert fake.response_url_posts("cmd")[0]["text"] == "done"
    assert seen["command"]["user_id"] == "U1" and seen["bot_user_id"] == fake.bot_user_id


@pytest.mark.parametrize("tampering", [{"forge": True}, {"unsigned": True}, {"stale": True}])
def test_bolt_rejects_requests_not_signed_by_slack(fake, bolt, tampering):
    sender, seen = bolt

    response = sender.post(slash_command_body("list", "U1"), **tampering)

    assert response.status == 401
    assert "command" not in seen and fake.calls("chat.postMessage") == []


def test_a_retried_delivery_carries_slacks_retry_headers(fake, bolt):
    sender, seen = bolt

    sender.post(slash_command_body("list", "U1", response_url=fake.response_url()), retry_num=1)

    assert seen["retry_num"] == ["1"]
    fake.wait_for("chat.postMessage")  # let the listener finish before the servers stop


def test_bolt_routes_a_button_click_on_a_message(fake, bolt, client):
    sender, seen = bolt
    bill_message = client.chat_postMessage(channel="C1", text="bill 7")

    response = sender.post(block_actions_body("U1", "approve", "bill:7", message=fake.messages()[0]))

    assert response.status == 200
    assert fake.wait_for("chat.update")[0]["ts"] == bill_message["ts"]
    assert fake.message("C1", bill_message["ts"])["text"] == "approved"
    assert seen["action"]["value"] == "bill:7"


def test_bolt_routes_a_modal_submission(bolt):
    sender, seen = bolt
    state = text_input_state("reason", "reason_input", "over budget")

    response = sender.post(view_submission_body("U1", "reject_reason", "bill:7", state))

    assert response.status == 200
    assert response.json() == {"response_action": "errors", "errors": {"reason": "say why"}}
    assert seen["view"]["private_metadata"] == "bill:7"
    assert seen["view"]["state"]["values"]["reason"]["reason_input"]["value"] == "over budget"


def test_bolt_acknowledges_an_event_at_once_and_handles_it_after(fake, bolt):
    sender, _ = bolt

    response = sender.post(event_body(app_home_opened_event("U1")))

    assert response.status == 200
    assert fake.wait_for("views.publish")[0]["user_id"] == "U1"


def test_bolt_answers_url_verification(bolt):
    sender, _ = bolt

    response = sender.post(url_verification_body("abc123"))

    assert (response.status, response.json()) == (200, {"challenge": "abc123"})


# --- what people see: kept for the sandbox page ---------------------------------------------------


def test_an_ephemeral_message_is_kept_for_its_person_only(fake, client):
    sent = client.chat_postEphemeral(channel="C1", user="U1", text="only you", blocks=[SECTION])

    [shown] = fake.ephemerals("U1", "C1")
    assert (shown["ts"], shown["to"], shown["blocks"]) == (sent["message_ts"], "U1", [SECTION])
    assert fake.ephemerals("U2") == [] and fake.messages("C1") == []


def test_an_issued_response_url_shows_each_answer_where_the_request_was_made(fake, client):
    bill = client.chat_postMessage(channel="C1", text="bill", blocks=[SECTION])
    command_url = fake.issue_response_url("U1", "C1")
    click_url = fake.issue_response_url("U2", "C1", message_ts=bill["ts"])

    WebhookClient(command_url).send(text="only for you")
    WebhookClient(command_url).send(text="for everyone", response_type="in_channel")
    replaced = WebhookClient(click_url).send(text="approved", replace_original=True)

    assert [m["text"] for m in fake.ephemerals("U1", "C1")] == ["only for you"]
    assert [m["text"] for m in fake.messages("C1")] == ["approved", "for everyone"]
    assert fake.message("C1", bill["ts"])["text"] == "approved" and replaced.status_code == 200
    assert fake.ephemerals("U2") == []


def test_a_response_url_takes_five_answers(fake):
    url = fake.issue_response_url("U1", "C1")

    statuses = [WebhookClient(url).send(text=f"answer {n}").status_code for n in range(6)]

    assert statuses == [200] * 5 + [404]
    assert fake.recorded("response_url")[-1].error == "used_url"
    assert len(fake.ephemerals("U1")) == 5


def test_a_modal_opens_in_front_of_the_person_whose_trigger_it_was(fake, client):
    fake.issue_trigger("1.2.carol", "U1")

    opened = client.views_open(trigger_id="1.2.carol", view=MODAL)["view"]
    client.views_update(view_id=opened["id"], view={**MODAL, "private_metadata": "bill:7"})

    assert fake.modal("U1")["id"] == opened["id"] and fake.modal("U1")["private_metadata"] == "bill:7"
    assert fake.modal("U2") is None
    fake.close_modal("U1", opened["id"])
    assert fake.modal("U1") is None


def test_a_trigger_older_than_three_seconds_opens_nothing():
    now = [100.0]
    with FakeSlack(clock=lambda: now[0]) as fake:
        fake.issue_trigger("1.2.late", "U1")
        now[0] += 3.5
        with pytest.raises(SlackApiError) as expired:
            WebClient(base_url=fake.url, token=TOKEN).views_open(trigger_id="1.2.late", view=MODAL)

    assert expired.value.response["error"] == "expired_trigger_id" and fake.modal("U1") is None


def test_a_file_shared_in_a_conversation_is_a_message_and_its_content_is_served(fake, client):
    client.files_upload_v2(content=b"id,amount\n1,12.50\n", filename="bills-2024-05.csv", title="May",
                           channel="C1", initial_comment="Your export")

    [shared] = fake.messages("C1")
    [file] = shared["files"]
    assert (shared["text"], file["name"], file["title"], file["mimetype"]) == (
        "Your export", "bills-2024-05.csv", "May", "text/csv")
    with urllib.request.urlopen(file["url_private"]) as answer:
        assert answer.read() == b"id,amount\n1,12.50\n" and answer.headers["Content-Type"] == "text/csv"


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        ([{"type": "carousel_of_doom"}], "block 1 (carousel_of_doom): unknown block type 'carousel_of_doom'"),
        ([SECTION, {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
         "block 2 (section): text attribute cannot exceed 3000 characters"),
        ([{"type": "actions", "elements": [{"type": "slider", "action_id": "a"}]}],
         "block 1 (actions): unknown element type slider"),
        ([{"type": "section"}], "block 1 (section): text or fields attribute must be specified"),
    ],
)
def test_invalid_block_kit_is_refused_as_slack_does_and_kept_and_logged(fake, client, caplog, blocks, problem):
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C1", text="bill", blocks=blocks)

    assert refused.value.response["error"] == "invalid_blocks"
    assert refused.value.response["response_metadata"]["messages"] == [f"[ERROR] {problem}"]
    assert fake.messages("C1") == []
    [kept] = fake.refusals()
    assert (kept["method"], kept["channel"], kept["problems"]) == ("chat.postMessage", "C1", [problem])
    assert problem in caplog.text


def test_a_view_with_invalid_blocks_is_refused_for_the_person_it_was_for(fake, client):
    with pytest.raises(SlackApiError) as refused:
        header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}
        client.views_publish(user_id="U1", view={**HOME, "blocks": [header]})

    assert refused.value.response["error"] == "invalid_arguments"
    [kept] = fake.refusals()
    assert (kept["method"], kept["user"]) == ("views.publish", "U1") and fake.home_view("U1") is None


def test_changes_are_numbered_and_named(fake, client):
    start = fake.version
    posted = client.chat_postMessage(channel="C1", text="bill")
    client.views_publish(user_id="U1", view=HOME)

    version, changed = fake.changed_since(start)

    assert version == fake.version > start
    assert changed == [("message", "C1", posted["ts"]), ("home", "U1")]
    assert fake.changed_since(version) == (version, [])


def test_what_people_see_survives_a_snapshot(fake, client):
    bill = client.chat_postMessage(channel="C1", text="bill", blocks=[SECTION])
    client.chat_postMessage(channel="C1", text="approved", thread_ts=bill["ts"])
    client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    client.views_publish(user_id="U1", view=HOME)
    client.files_upload_v2(content=b"chart", filename="usage.png", channel="U1")
    snapshot = json.loads(json.dumps(fake.snapshot()))

    with FakeSlack() as later:
        later.restore(snapshot)
        again = WebClient(base_url=later.url, token=TOKEN).chat_postMessage(channel="C1", text="next")

        assert [m["text"] for m in later.top_level("C1")] == ["bill", "next"]
        assert [m["text"] for m in later.thread_replies("C1", bill["ts"])] == ["approved"]
        assert later.ephemerals("U1")[0]["text"] == "only you"
        assert later.home_view("U1")["blocks"] == [SECTION]
        assert later.dm_channel("U1") == fake.dm_channel("U1")
        assert list(later.uploads.values()) == [b"chart"]
        assert float(again["ts"]) > float(bill["ts"])
