"""IVR flows run end to end on a scripted caller (`FakeChannel`): every node type through `run_flow`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from ivr_fakes import Barge, FakeChannel, FakeRouter, Reply, StubHttp

from hatif.calls.api import Outcome
from hatif.ivr.model import Flow, FlowSet
from hatif.ivr.rules import NumberList, Schedule
from hatif.ivr.runner import run_flow
from hatif.ivr.validate import KnownTargets, validate_flows


def load(text: str, *, schedules: dict[str, object] | None = None, lists: dict[str, object] | None = None,
         timezone: str = "UTC", variables: tuple[str, ...] = ()) -> FlowSet:
    """Flows from YAML (flow name -> flow), checked as the configuration loader checks them."""
    flows = {name: Flow.model_validate(f) for name, f in yaml.safe_load(text).items()}
    rules = {k: Schedule.model_validate(v) for k, v in (schedules or {}).items()}
    numbers = {k: NumberList.model_validate(v) for k, v in (lists or {}).items()}
    known = KnownTargets(schedules=frozenset(rules), lists=frozenset(numbers), variables=frozenset(variables))
    assert validate_flows(flows, known) == []
    return FlowSet(flows, rules, numbers, timezone)


def run(channel: FakeChannel, flows: FlowSet, name: str = "main", router: FakeRouter | None = None,
        clock: Callable[[], float] = lambda: 0.0, step_limit: int = 500) -> str:
    return asyncio.run(run_async(channel, flows, name, router, clock, step_limit))


async def run_async(channel: FakeChannel, flows: FlowSet, name: str = "main", router: FakeRouter | None = None,
                    clock: Callable[[], float] = lambda: 0.0, step_limit: int = 500) -> str:
    coro = run_flow(channel, flows, name, router=router or FakeRouter(), clock=clock, step_limit=step_limit)
    return await asyncio.wait_for(coro, timeout=10)


def texts(channel: FakeChannel) -> list[str]:
    return [text for text, _ in channel.said]


# -- say ----------------------------------------------------------------------------------------------------


def test_say_then_hang_up() -> None:
    flows = load("""
main:
  start: hello
  nodes:
    hello: {type: say, text: "Welcome", next: bye}
    bye: {type: say, text: {en: "Goodbye", ar: "مع السلامة", fa: "خدانگهدار"}}
""")
    ch = FakeChannel(language="ar")
    assert run(ch, flows) == "normal"
    assert ch.answered
    assert ch.said == [("Welcome", "ar"), ("مع السلامة", "ar")]
    assert ch.events[-1] == ("hangup", "normal")


def test_text_missing_in_the_callers_language_is_said_in_its_own() -> None:
    flows = load("""
main:
  start: hello
  nodes:
    hello: {type: say, text: {fa: "سلام", ar: "مرحبا"}}
""")
    ch = FakeChannel(language="en")
    run(ch, flows)
    assert ch.said == [("سلام", "fa")]


def test_wav_prompt_is_played_and_a_missing_one_falls_back_to_text(tmp_path: Path) -> None:
    wav = tmp_path / "welcome-ar.wav"
    wav.write_bytes(b"RIFF")
    flows = load(f"""
main:
  start: one
  nodes:
    one: {{type: say, wav: {{ar: "{wav}"}}, text: "Welcome", next: two}}
    two: {{type: say, wav: "{tmp_path / 'missing.wav'}", text: "Still welcome"}}
""")
    ch = FakeChannel(language="ar")
    run(ch, flows)
    assert ch.events[0] == ("play", str(wav), False)
    assert ch.said == [("Still welcome", "ar")]
    en = FakeChannel(language="en")
    run(en, flows)
    assert en.said == [("Welcome", "en"), ("Still welcome", "en")]  # an English text beats an Arabic recording


# -- menu ---------------------------------------------------------------------------------------------------

MENU = """
main:
  start: menu
  nodes:
    menu:
      type: menu
      prompt: {en: "For sales press 1, for support press 2", ar: "للمبيعات اضغط 1", fa: "برای فروش ۱ را بزنید"}
      options: {1: sales, 2: support, "#": support}
      timeout: 7
      on_fail: sorry
    sales: {type: say, text: "Sales"}
    support: {type: say, text: "Support"}
    sorry: {type: say, text: {en: "Please call again later", ar: "يرجى الاتصال لاحقا"}}
"""


def test_menu_key_typed_during_the_prompt() -> None:
    ch = FakeChannel([Barge("2")])
    run(ch, load(MENU))
    assert ch.events[0][0] == "say" and ch.events[0][3] is True  # the menu prompt can be interrupted
    assert not any(e[0] == "collect" for e in ch.events)
    assert texts(ch)[-1] == "Support"


def test_menu_key_after_the_prompt() -> None:
    ch = FakeChannel(["1"])
    run(ch, load(MENU))
    assert ("collect", 1, 7.0, 7.0, "") in ch.events  # one key, no terminator: '#' is an option here
    assert texts(ch) == ["For sales press 1, for support press 2", "Sales"]


def test_menu_pound_is_an_option() -> None:
    ch = FakeChannel(["#"])
    run(ch, load(MENU))
    assert texts(ch)[-1] == "Support"


def test_menu_invalid_key_then_a_valid_one() -> None:
    ch = FakeChannel(["5", "1"], language="fa")
    run(ch, load(MENU))
    assert ch.said == [("برای فروش ۱ را بزنید", "fa"), ("متأسفم، این گزینه معتبر نیست.", "fa"),
                       ("برای فروش ۱ را بزنید", "fa"), ("Sales", "fa")]


def test_menu_times_out_until_on_fail() -> None:
    ch = FakeChannel(["", "", ""], language="ar")
    run(ch, load(MENU))
    said = texts(ch)
    assert said.count("للمبيعات اضغط 1") == 3
    assert said.count("عذرًا، لم نستلم اختيارك.") == 3
    assert said[-1] == "يرجى الاتصال لاحقا"
    assert sum(1 for e in ch.events if e[0] == "collect") == 3
    assert ch.hangup_cause == "normal"


def test_menu_without_on_fail_hangs_up_after_the_last_try() -> None:
    flows = load("""
main:
  start: menu
  nodes:
    menu: {type: menu, prompt: "Press 1", options: {1: done}, retries: 2}
    done: {type: say, text: "Done"}
""")
    ch = FakeChannel(["9", "9"])
    assert run(ch, flows) == "normal"
    assert texts(ch) == ["Press 1", "Sorry, that is not a valid choice.", "Press 1",
                         "Sorry, that is not a valid choice."]


def test_menu_key_typed_during_the_sorry_prompt_is_the_next_try() -> None:
    ch = FakeChannel(["7", Barge("1")])
    run(ch, load(MENU))
    assert texts(ch) == ["For sales press 1, for support press 2", "Sorry, that is not a valid choice.", "Sales"]


# -- collect ------------------------------------------------------------------------------------------------

COLLECT = """
main:
  start: ask
  nodes:
    ask:
      type: collect
      prompt: {en: "Enter your order number, then pound", ar: "أدخل رقم الطلب ثم المربع"}
      variable: order
      min_digits: 3
      max_digits: 6
      timeout: 6
      inter_digit: 2
      next: confirm
      on_fail: operator
    confirm: {type: say, text: {en: "Order {order}", ar: "الطلب {order}"}}
    operator: {type: route, to: "extension:1001"}
"""


def test_collect_until_the_terminator() -> None:
    ch = FakeChannel(["1234#"])
    run(ch, load(COLLECT))
    assert ("collect", 6, 6.0, 2.0, "#") in ch.events
    assert ch.variables == {"order": "1234"}
    assert texts(ch)[-1] == "Order 1234"


def test_collect_retries_after_too_few_digits_and_silence() -> None:
    ch = FakeChannel(["12#", "", "98765#"], language="ar")
    run(ch, load(COLLECT))
    assert texts(ch) == ["أدخل رقم الطلب ثم المربع", "عذرًا، هذا الرقم غير صحيح.",
                         "أدخل رقم الطلب ثم المربع", "عذرًا، لم نستلم أي أرقام.",
                         "أدخل رقم الطلب ثم المربع", "الطلب 98765"]
    assert ch.variables["order"] == "98765"


def test_collect_first_digit_typed_during_the_prompt() -> None:
    ch = FakeChannel([Barge("4"), "56#"])
    run(ch, load(COLLECT))
    assert ("collect", 5, 2.0, 2.0, "#") in ch.events  # the rest, with the inter-digit time-out
    assert ch.variables["order"] == "456"


def test_collect_gives_up_after_its_retries() -> None:
    ch = FakeChannel(["1#", "2#", "#"])
    run(ch, load(COLLECT))
    assert "order" not in ch.variables
    assert ch.connects == [("extension:1001", None)]


# -- language -----------------------------------------------------------------------------------------------

LANGUAGE = """
main:
  start: choose
  nodes:
    choose: {type: language, options: {1: ar, 2: fa, 3: en}, next: hello}
    hello: {type: say, text: {en: "Welcome", ar: "أهلا وسهلا", fa: "خوش آمدید"}}
"""


def test_language_choice_speaks_each_option_in_its_own_language() -> None:
    ch = FakeChannel(["2"], language="en")
    run(ch, load(LANGUAGE))
    assert ch.said[:3] == [("للعربية، اضغط 1.", "ar"), ("برای فارسی، 2 را فشار دهید.", "fa"),
                           ("For English, press 3.", "en")]
    assert ch.language == "fa"
    assert ch.said[-1] == ("خوش آمدید", "fa")


def test_language_choice_typed_ahead_stops_the_options() -> None:
    ch = FakeChannel([Barge("1")], language="fa")
    run(ch, load(LANGUAGE))
    assert ch.said == [("للعربية، اضغط 1.", "ar"), ("أهلا وسهلا", "ar")]
    assert ch.language == "ar"


def test_language_not_chosen_keeps_the_language() -> None:
    ch = FakeChannel(["", ""], language="ar")
    run(ch, load(LANGUAGE))
    assert ch.language == "ar"
    assert ch.said[-1] == ("أهلا وسهلا", "ar")


def test_language_set_directly() -> None:
    flows = load("""
main:
  start: arabic
  nodes:
    arabic: {type: language, set: AR, next: hello}
    hello: {type: say, text: {en: "Welcome", ar: "أهلا وسهلا"}}
""")
    ch = FakeChannel(language="en")
    run(ch, flows)
    assert ch.language == "ar"
    assert ch.said == [("أهلا وسهلا", "ar")]


# -- conditions ---------------------------------------------------------------------------------------------

RULES = """
main:
  start: check
  nodes:
    check:
      type: condition
      cases:
        - {when: {caller_in: vip}, next: vip}
        - {when: {hours: office}, next: open}
      default: closed
    vip: {type: say, text: "VIP"}
    open: {type: say, text: "Open"}
    closed: {type: say, text: "Closed"}
"""
OFFICE = {"office": {"open": {"sun-thu": "08:00-17:00"}, "holidays": ["2026-09-23"]}}
VIP = {"vip": ["+966 50 999 0000", "1001"]}


def riyadh(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Asia/Riyadh")).timestamp()


@pytest.mark.parametrize(("when", "heard"), [
    (riyadh(2026, 9, 20, 8, 0), "Open"),      # Sunday 08:00 (05:00 UTC: closed if read in UTC)
    (riyadh(2026, 9, 20, 7, 59), "Closed"),
    (riyadh(2026, 9, 24, 16, 59), "Open"),    # Thursday
    (riyadh(2026, 9, 25, 10, 0), "Closed"),   # Friday
    (riyadh(2026, 9, 23, 10, 0), "Closed"),   # Wednesday, Saudi National Day: a holiday
])
def test_business_hours_in_the_tenants_zone(when: float, heard: str) -> None:
    flows = load(RULES, schedules=OFFICE, lists=VIP, timezone="Asia/Riyadh")
    ch = FakeChannel(caller_number="+966501234567")
    run(ch, flows, clock=lambda: when)
    assert texts(ch) == [heard]


@pytest.mark.parametrize("caller", ["+966509990000", "+966 (50) 999-0000", "1001"])
def test_vip_callers(caller: str) -> None:
    flows = load(RULES, schedules=OFFICE, lists=VIP, timezone="Asia/Riyadh")
    ch = FakeChannel(caller_number=caller)
    run(ch, flows, clock=lambda: riyadh(2026, 9, 25, 10, 0))
    assert texts(ch) == ["VIP"]


VARIABLES = """
main:
  start: amount
  nodes:
    amount: {type: collect, prompt: "Amount?", variable: amount, max_digits: 5, next: check}
    check:
      type: condition
      cases:
        - {when: {var: amount, op: gt, value: 1000}, next: big}
        - {when: {var: amount, op: in, value: ["7", "77"]}, next: lucky}
        - {when: {var: amount, op: prefix, value: "9"}, next: nines}
        - {when: {var: language, op: eq, value: ar}, next: arabic}
        - {when: {var: amount, op: ne, value: "5"}, next: other}
      default: five
    big: {type: say, text: "big"}
    lucky: {type: say, text: "lucky"}
    nines: {type: say, text: "nines"}
    arabic: {type: say, text: "arabic"}
    other: {type: say, text: "other"}
    five: {type: say, text: "five"}
"""


@pytest.mark.parametrize(("typed", "language", "heard"), [
    ("1001#", "en", "big"), ("77#", "en", "lucky"), ("900#", "en", "nines"), ("12#", "ar", "arabic"),
    ("12#", "en", "other"), ("5#", "en", "five"), ("1000#", "en", "other"),
])
def test_variable_conditions(typed: str, language: str, heard: str) -> None:
    ch = FakeChannel([typed], language=language)
    run(ch, load(VARIABLES))
    assert texts(ch)[-1] == heard


# -- http ---------------------------------------------------------------------------------------------------


def http_flows(url: str, timeout: float = 3.0) -> FlowSet:
    return load(f"""
main:
  start: ask
  nodes:
    ask: {{type: collect, prompt: "Order number?", variable: order, max_digits: 8, next: lookup}}
    lookup:
      type: http
      url: "{url}/orders/{{order}}?lang={{language}}"
      timeout: {timeout}
      extract: {{status: "result.status", eta: "result.days.0"}}
      say: {{en: "Order {{order}} is {{status}}", fa: "سفارش {{order}} {{status}}"}}
      next: bye
      on_error: sorry
    sorry: {{type: say, text: "We cannot look it up now", next: bye}}
    bye: {{type: route, to: hangup, message: "Goodbye"}}
""")


def test_http_lookup_success_is_spoken_back() -> None:
    async def go() -> tuple[FakeChannel, StubHttp, str]:
        body = json.dumps({"result": {"status": "ارسال شده", "days": [2, 3]}}).encode()
        async with StubHttp({"/orders/1001": Reply(200, body)}) as http:
            ch = FakeChannel(["1001#"], language="fa")
            cause = await run_async(ch, http_flows(http.url))
            return ch, http, cause
    ch, http, cause = asyncio.run(go())
    assert cause == "normal"
    assert http.requests == [("GET", "/orders/1001?lang=fa", b"")]
    assert ch.variables == {"order": "1001", "status": "ارسال شده", "eta": "2"}
    assert texts(ch) == ["Order number?", "سفارش 1001 ارسال شده", "Goodbye"]


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(200, b"{}", delay=5.0), "no answer within 0.3 s"),
    (Reply(500, b'{"result": {"status": "x", "days": [1]}}'), "status 500"),
    (Reply(200, b"<html>not json</html>", content_type="text/html"), "not JSON"),
    (Reply(200, b'{"result": {"days": [1]}}'), "no 'result.status'"),
    (Reply(200, b'{"result": {"status": {"a": 1}, "days": [1]}}'), "not a text or a number"),
])
def test_http_lookup_failures_take_on_error(reply: Reply, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> FakeChannel:
        async with StubHttp({"/orders/1001": reply}) as http:
            ch = FakeChannel(["1001#"])
            await run_async(ch, http_flows(http.url, timeout=0.3))
            return ch
    with caplog.at_level(logging.WARNING, logger="hatif.ivr.machine"):
        ch = asyncio.run(go())
    assert texts(ch) == ["Order number?", "We cannot look it up now", "Goodbye"]
    assert "status" not in ch.variables
    failures = [r for r in caplog.records if r.getMessage() == "ivr http lookup failed"]
    assert len(failures) == 1
    assert reason in failures[0].fields["reason"]
    assert failures[0].fields["node"] == "lookup"


def test_http_lookup_connection_refused_takes_on_error() -> None:
    async def closed_port() -> int:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return port
    port = asyncio.run(closed_port())
    ch = FakeChannel(["1001#"])
    run(ch, http_flows(f"http://127.0.0.1:{port}"))
    assert texts(ch)[-2] == "We cannot look it up now"


def test_http_values_are_url_quoted_and_posted_as_json() -> None:
    async def go() -> tuple[FakeChannel, StubHttp]:
        async with StubHttp({"/find/a%2F..%3Fx%3D1": Reply(204, b"")}) as http:
            flows = load(f"""
main:
  start: lookup
  nodes:
    lookup:
      type: http
      method: post
      url: "{http.url}/find/{{ref}}"
      body: {{caller: "{{caller}}", ref: "{{ref}}"}}
      next: ok
      on_error: failed
    ok: {{type: say, text: "ok"}}
    failed: {{type: say, text: "failed"}}
""", variables=("ref",))
            ch = FakeChannel(variables={"ref": "a/..?x=1"})
            await run_async(ch, flows)
            return ch, http
    ch, http = asyncio.run(go())
    method, target, body = http.requests[0]
    assert (method, target) == ("POST", "/find/a%2F..%3Fx%3D1")
    assert json.loads(body) == {"caller": "+966501234567", "ref": "a/..?x=1"}
    assert texts(ch) == ["ok"]


# -- routes -------------------------------------------------------------------------------------------------

ROUTES = """
main:
  start: menu
  nodes:
    menu:
      type: menu
      prompt: "Choose"
      options: {1: sales, 2: doctor, 3: mobile, 4: colleague, 5: trunk, 6: other, 9: messages, 0: leave}
    sales: {type: route, to: "queue:sales", on_fail: sales_vm}
    sales_vm: {type: route, to: "voicemail:sales", message: "Please leave a message"}
    doctor: {type: route, to: "user:dr.amini", timeout: 20, on_fail: busy}
    mobile: {type: route, to: "number:+98 912 000 0000", on_fail: busy}
    colleague: {type: route, to: "extension:1002", on_fail: busy}
    trunk: {type: route, to: "endpoint:carrier/0551234567", on_fail: busy}
    other: {type: route, to: "flow:other"}
    messages: {type: route, to: "voicemail:general"}
    busy: {type: route, to: hangup, message: {en: "Nobody can answer now. Goodbye.", ar: "لا أحد متاح الآن"}}
    leave: {type: route, to: hangup}
other:
  start: hi
  nodes:
    hi: {type: say, text: "Other flow", next: back}
    back: {type: menu, prompt: "Press 1 to go back", options: {1: again}}
    again: {type: route, to: "flow:main"}
"""


def test_route_to_a_queue_that_answers_ends_the_flow() -> None:
    router = FakeRouter()
    ch = FakeChannel(["1"])
    assert run(ch, load(ROUTES), router=router) == "normal"
    assert router.queued == ["sales"]
    assert router.voicemails == []
    assert ch.hangup_cause == "normal"


def test_route_to_a_queue_that_gives_up_goes_to_voicemail() -> None:
    router = FakeRouter(queues={"sales": "no_answer"})
    ch = FakeChannel(["1"])
    run(ch, load(ROUTES), router=router)
    assert router.voicemails == ["sales"]
    assert texts(ch)[-1] == "Please leave a message"


@pytest.mark.parametrize(("key", "dialed", "timeout"), [
    ("2", "user:dr.amini", 20.0), ("3", "+989120000000", None), ("4", "extension:1002", None),
    ("5", "endpoint:carrier/0551234567", None),
])
def test_route_connects_people_and_numbers(key: str, dialed: str, timeout: float | None) -> None:
    ch = FakeChannel([key])
    assert run(ch, load(ROUTES)) == "normal"
    assert ch.connects == [(dialed, timeout)]
    assert texts(ch) == ["Choose"]


def test_route_that_fails_goes_to_on_fail() -> None:
    ch = FakeChannel(["2"], language="ar", outcomes={"user:dr.amini": "busy"})
    run(ch, load(ROUTES))
    assert ch.said[-1] == ("لا أحد متاح الآن", "ar")
    assert ch.hangup_cause == "normal"


def test_route_to_voicemail_and_hangup() -> None:
    router = FakeRouter()
    ch = FakeChannel(["9"])
    run(ch, load(ROUTES), router=router)
    assert router.voicemails == ["general"]
    ch = FakeChannel(["0"])
    assert run(ch, load(ROUTES)) == "normal"
    assert ch.events[-1] == ("hangup", "normal")


def test_route_to_another_flow_and_back() -> None:
    router = FakeRouter()
    ch = FakeChannel(["6", "1", "1"])
    run(ch, load(ROUTES), router=router)
    assert texts(ch) == ["Choose", "Other flow", "Press 1 to go back", "Choose"]
    assert router.queued == ["sales"]


# -- the end of a call --------------------------------------------------------------------------------------


def test_caller_hanging_up_ends_the_flow_quietly() -> None:
    ch = FakeChannel([], language="en")  # no keys: hangs up at the first collect
    assert run(ch, load(MENU)) == "caller_hangup"
    assert not any(e[0] == "hangup" for e in ch.events)  # the flow does not hang up a call that is gone


def test_caller_gone_before_the_flow_starts() -> None:
    ch = FakeChannel()
    ch.hangup_cause = "caller"
    assert run(ch, load(MENU)) == "caller_hangup"


def test_step_limit_stops_a_loop_that_validation_would_refuse(caplog: pytest.LogCaptureFixture) -> None:
    flows = FlowSet({"main": Flow.model_validate({"start": "a", "nodes": {
        "a": {"type": "say", "text": "a", "next": "b"},
        "b": {"type": "condition", "cases": [{"when": {"var": "x", "op": "eq", "value": "1"}, "next": "c"}],
              "default": "a"},
        "c": {"type": "say", "text": "c"},
    }})})
    ch = FakeChannel()
    with caplog.at_level(logging.WARNING):
        assert run(ch, flows, step_limit=50) == "step_limit"
    assert len(ch.said) == 25
    assert ch.hangup_cause == "step_limit"
    assert any(r.getMessage() == "ivr step limit" for r in caplog.records)


def test_unknown_flow_hangs_up() -> None:
    ch = FakeChannel()
    assert run(ch, load(MENU), name="nope") == "flow_error"
    assert ch.hangup_cause == "flow_error"


def test_every_step_is_logged_with_flow_node_and_call(caplog: pytest.LogCaptureFixture) -> None:
    ch = FakeChannel(["1"], call_id="c-42")
    with caplog.at_level(logging.DEBUG, logger="hatif.ivr"):
        run(ch, load(MENU))
    steps = [r.fields for r in caplog.records if r.getMessage() == "ivr step"]
    assert [(s["flow"], s["node"], s["call"]) for s in steps] == [("main", "menu", "c-42"), ("main", "sales", "c-42")]


def test_a_failing_route_handler_hangs_up_with_flow_error(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeRouter):
        async def queue(self, channel: FakeChannel, name: str) -> Outcome:
            raise RuntimeError("queue service down")

    ch = FakeChannel(["1"])
    with caplog.at_level(logging.ERROR, logger="hatif.ivr.runner"):
        assert run(ch, load(ROUTES), router=Broken()) == "flow_error"
    assert ch.hangup_cause == "flow_error"
    assert any(r.getMessage() == "ivr failed" and r.exc_info for r in caplog.records)
