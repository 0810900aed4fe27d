"""Hostile input against templates, front matter, headers and the web routes.

Every case asserts the clear error (file and line, or the refusal the route gives) and that the
database is exactly as it was (every row of every table). The shop is tests/test_web.py's tiny one
(4 customers, SQLite); the public token routes are also fuzzed with hypothesis.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text

from campaigns import sandbox
from campaigns.config import Settings
from campaigns.definition import find_campaign, load_campaign
from campaigns.errors import RenderError, TemplateError
from campaigns.factory import BuildOptions, EmailFactory, Prepared
from campaigns.kinds import build_context
from campaigns.kinds.fixture import fixture_member, load_fixture
from campaigns.message import build_message, clean_header_value
from campaigns.render import CampaignRenderer, RenderedEmail
from campaigns.sandbox import RenderLimits
from campaigns.store import Store
from campaigns.tokens import FEEDBACK, TEST_FIELD, UNSUBSCRIBE, sign_as_test, sign_token, verify_token
from campaigns.web.public import create_public_app
from tests.test_web import PREVIEW_ORIGIN, TestClient, make_shop, preview_client

KEY = b"web-test-secret"
METHODS = ("GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH")


# ---------------------------------------------------------------------- helpers


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: the database as it is."""
    with store.engine.connect() as conn:
        names = inspect(conn).get_table_names()
        return {
            name: sorted((tuple(row) for row in conn.execute(text(f'SELECT * FROM "{name}"'))), key=repr)
            for name in names
        }


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Store, Settings]]:
    store, s = make_shop(tmp_path)
    try:
        yield store, s
    finally:
        store.close()


def _emails(s: Settings) -> Path:
    return Path(s.templates_dir) / "emails"


def inject(s: Settings, line: str, campaign: str = "weekly-picks") -> int:
    """Put ``line`` on a line of its own just inside the body's content block; its file line number."""
    path = _emails(s) / f"{campaign}.mjml"
    lines = path.read_text().splitlines()
    at = next(i for i, text_ in enumerate(lines) if "{% block content %}" in text_) + 1
    lines.insert(at, line)
    path.write_text("\n".join(lines) + "\n")
    return at + 1


def set_front(s: Settings, key: str, value: str, campaign: str = "weekly-picks") -> int:
    """Replace (or add) a front-matter line ``key: value``; its line number."""
    path = _emails(s) / f"{campaign}.mjml"
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines[1:], start=1):
        if line.startswith(f"{key}:"):
            lines[i] = f"{key}: {value}"
            break
        if line.strip() == "---":
            lines.insert(i, f"{key}: {value}")
            break
    path.write_text("\n".join(lines) + "\n")
    return i + 1


def render_fixture(s: Settings, campaign: str = "weekly-picks", **kwargs: Any) -> RenderedEmail:
    d = find_campaign(Path(s.templates_dir), campaign)
    context = build_context(d, s, load_fixture(d, s.currency), is_preview=True)
    return CampaignRenderer(d, s, **kwargs).render(context)


def lint(s: Settings, campaign: str = "weekly-picks") -> list[str]:
    """What `retain lint` and the preview's campaign list report for one campaign."""
    from campaigns.cli.content import lint_campaign

    return lint_campaign(_emails(s) / f"{campaign}.mjml", s)


# ---------------------------------------------------------------------- templates

POPEN = "{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}"


def test_popen_through_globals_in_the_body_is_refused_and_runs_nothing(
    shop: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from campaigns.cli import main

    store, s = shop
    before = snapshot(store)
    marker = tmp_path / "pwned"
    line = inject(s, POPEN % marker)
    [problem] = lint(s)
    assert f"weekly-picks.mjml:{line}:" in problem and "unsafe" in problem
    # the real command, as a user runs it: a message, exit 1, no traceback
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", s.templates_dir)
    monkeypatch.setenv("RETAIN_SECRET_KEY", "web-test-secret")
    monkeypatch.chdir(tmp_path)
    assert main(["--db", s.database_url, "lint", "weekly-picks", "--quick"]) == 1
    err = capsys.readouterr().err
    assert f"weekly-picks.mjml:{line}:" in err and "Traceback" not in err
    assert not marker.exists()
    assert snapshot(store) == before


def test_reading_the_environment_from_the_subject_is_refused(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    line = set_front(s, "subject", "\"{{ cycler.__init__.__globals__.os.environ['RETAIN_SMTP_PASSWORD'] }}\"")
    with pytest.raises(RenderError) as caught:
        render_fixture(s)
    assert f"weekly-picks.mjml:{line}:" in str(caught.value) and "subject" in str(caught.value)
    assert "unsafe" in str(caught.value)
    assert snapshot(store) == before


def test_class_walk_in_the_preheader_is_refused(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    line = set_front(s, "preheader", "\"{{ ''.__class__.__mro__[1].__subclasses__() }}\"")
    with pytest.raises(RenderError, match=rf"weekly-picks.mjml:{line}: preheader: .*unsafe"):
        render_fixture(s)
    assert snapshot(store) == before


def test_the_text_part_is_sandboxed_too(shop: Any, tmp_path: Path) -> None:
    store, s = shop
    before = snapshot(store)
    marker = tmp_path / "pwned-text"
    path = _emails(s) / "weekly-picks.txt"
    path.write_text(path.read_text() + "\n" + POPEN % marker + "\n")
    line = path.read_text().count("\n")
    with pytest.raises(RenderError, match=rf"weekly-picks.txt:{line}: .*unsafe"):
        render_fixture(s, compile=False)
    assert not marker.exists()
    assert snapshot(store) == before


def test_settings_are_not_in_the_template_context(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    line = inject(s, "{{ settings.smtp_password }}{{ config }}")
    with pytest.raises(RenderError, match=rf"weekly-picks.mjml:{line}: .*undefined variable.*settings"):
        render_fixture(s)
    assert snapshot(store) == before


def test_a_huge_range_ends_at_once_naming_the_line(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    line = inject(s, "{% for i in range(10**11) %}{{ i }}{% endfor %}")
    started = time.monotonic()
    problems = lint(s)
    assert time.monotonic() - started < 30  # was: lint hung
    assert any(f"weekly-picks.mjml:{line}:" in p and "at most 10,000" in p for p in problems), problems
    assert snapshot(store) == before


def test_a_slow_loop_ends_at_the_time_bound_naming_the_line(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, s = shop
    before = snapshot(store)
    monkeypatch.setattr(sandbox, "DEFAULT_LIMITS", RenderLimits(seconds=1.0))
    line = inject(s, "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}")
    started = time.monotonic()
    problems = lint(s)
    assert time.monotonic() - started < 20  # 10^8 iterations would take minutes
    assert any(f"weekly-picks.mjml:{line}:" in p and "longer than 1 s" in p for p in problems), problems
    assert snapshot(store) == before


def test_output_size_is_bounded(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    line = inject(s, "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}")
    with pytest.raises(RenderError, match=rf"weekly-picks.mjml:{line}: .*more than 2,000,000 characters"):
        render_fixture(s)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 10**9 }}", "1,000,000,000 characters"),
        ("{{ 'x' | center(10**9) }}", "center width"),
        ("{{ 'x'.ljust(10**9) }}", "str.ljust"),
        ("{{ '{:>999999999}'.format(1) }}", "format width"),
        ("{{ '%999999999d' % 1 }}", "format width"),
        ("{{ (10**1000) ** 1000 }}", "a power over"),
        ("{{ [1] | batch(10**9, 'x') | list }}", "batch into"),
        ("{{ ('x' * 100000) | replace('x', 'y' * 100000) }}", "replace of"),
    ],
    ids=["repeat", "center", "ljust", "str-format", "percent-format", "power", "batch", "replace"],
)
def test_single_expressions_that_would_eat_memory_are_refused(shop: Any, source: str, message: str) -> None:
    store, s = shop
    before = snapshot(store)
    line = inject(s, source)
    with pytest.raises(RenderError) as caught:
        render_fixture(s)
    assert f"weekly-picks.mjml:{line}:" in str(caught.value) and message in str(caught.value)
    assert snapshot(store) == before


def test_doubling_a_string_through_a_namespace_or_a_macro_is_refused(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    doubling = (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    )
    line = inject(s, doubling)
    with pytest.raises(RenderError, match=rf"weekly-picks.mjml:{line}: .*namespace value 's'"):
        render_fixture(s)
    inject(s, "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}")
    path = _emails(s) / "weekly-picks.mjml"
    path.write_text(path.read_text().replace(doubling, "{{ d('x', 60) }}"))
    with pytest.raises(RenderError, match="a call argument"):
        render_fixture(s)
    assert snapshot(store) == before


def test_endless_recursion_and_division_by_zero_are_messages(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    line = inject(s, "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}")
    with pytest.raises(RenderError, match="RecursionError"):
        render_fixture(s)
    path = _emails(s) / "weekly-picks.mjml"
    path.write_text(
        path.read_text().replace("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "{{ 1 / 0 }}")
    )
    with pytest.raises(RenderError, match=rf"weekly-picks.mjml:{line}: .*ZeroDivisionError"):
        render_fixture(s)
    assert snapshot(store) == before


def test_mutating_the_context_is_refused(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    line = inject(s, "{{ blocks.append(1) }}{{ customer.update({'email': 'x@evil.example'}) }}")
    with pytest.raises(RenderError, match=rf"weekly-picks.mjml:{line}: .*unsafe"):
        render_fixture(s)
    assert snapshot(store) == before


def test_a_context_holding_an_object_is_refused(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    d = find_campaign(Path(s.templates_dir), "weekly-picks")
    context = build_context(d, s, load_fixture(d, s.currency), is_preview=True)
    with pytest.raises(TemplateError, match=r"holds a Settings at 'shop.config'.*plain data only"):
        CampaignRenderer(d, s).render(dict(context, shop=dict(context["shop"], config=s)))
    assert snapshot(store) == before


def test_the_preview_list_survives_a_hostile_template(shop: Any, tmp_path: Path) -> None:
    store, s = shop
    before = snapshot(store)
    marker = tmp_path / "pwned-list"
    inject(s, POPEN % marker)
    with preview_client(store, s) as client:
        page = client.get("/").text
    assert "weekly-picks" in page and "unsafe" in page
    assert not marker.exists()
    assert snapshot(store) == before


# ---------------------------------------------------------------------- front matter

BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
description: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_alias_bomb_is_refused_at_once_naming_the_line(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    path = _emails(s) / "weekly-picks.mjml"
    path.write_text(path.read_text().replace("kind: recommendation\n", "kind: recommendation\n" + BOMB, 1))
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"weekly-picks.mjml:4: front matter uses a YAML anchor &a"):
        load_campaign(path)
    with preview_client(store, s) as client:
        page = client.get("/").text
    assert time.monotonic() - started < 20  # was: ~2 minutes and 3 GB
    assert "anchors and aliases are not allowed" in page
    assert snapshot(store) == before


def test_a_lone_alias_is_refused_with_its_line(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    line = set_front(s, "description", "*nowhere")
    with pytest.raises(TemplateError, match=rf"weekly-picks.mjml:{line}: front matter"):
        load_campaign(_emails(s) / "weekly-picks.mjml")
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("from", '"Shop <hello@shop.example>, thief@evil.example"', "exactly one address"),
        ("from", '"thief@evil.example <hello@shop.example>"', "exactly one address"),
        ("from", '"Shop <hello@shop.example"', "not an email address"),
        ("from", '"Shop \u202eelpmaxe.pohs <hello@shop.example>"', "invisible"),
        ("from", '"Shop\u200b <hello@shop.example>"', "invisible"),
        ("reply_to", '"a@shop.example; b@evil.example"', "exactly one address"),
        ("reply_to", '"not an address"', "exactly one address"),
    ],
    ids=["second-address", "address-in-name", "unclosed", "bidi", "zero-width", "two-reply-to", "no-at"],
)
def test_from_and_reply_to_must_be_exactly_one_address(shop: Any, key: str, value: str, message: str) -> None:
    store, s = shop
    before = snapshot(store)
    line = set_front(s, key, value)
    [problem] = lint(s)
    assert f"weekly-picks.mjml:{line}:" in problem and message in problem
    assert snapshot(store) == before


def test_a_campaign_reply_to_becomes_the_header(shop: Any) -> None:
    store, s = shop
    set_front(s, "from", '"Paper & Pine <hello@shop.example>"')
    set_front(s, "reply_to", '"Care <care@shop.example>"')
    d = find_campaign(Path(s.templates_dir), "weekly-picks")
    inputs = load_fixture(d, s.currency)
    factory = EmailFactory(s, d, catalogue=None, recommender=None, options=BuildOptions(run_key="t"))
    item = factory.prepare_inputs(fixture_member(inputs), inputs)
    assert isinstance(item, Prepared) and item.email is not None
    parsed = message_from_bytes(item.email.data, policy=policy.default)
    assert parsed["Reply-To"] == "Care <care@shop.example>"
    assert parsed["From"].addresses[0].display_name == "Paper & Pine"


# ---------------------------------------------------------------------- headers

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"


def _message(subject: str, to_name: str) -> Any:
    rendered = RenderedEmail(subject=subject, preheader="", html="<p>hi</p>", text="hi")
    email = build_message(
        rendered,
        to_email="ann@example.test",
        to_name=to_name,
        from_="Shop <hello@shop.example>",
        list_unsubscribe_url="https://shop.example/u/x",
        list_unsubscribe_mailto=None,
        campaign="c",
        run_key="r",
        message_id_domain="shop.example",
    )
    return message_from_bytes(email.data, policy=policy.default)


def test_bidi_and_zero_width_characters_are_stripped_from_subject_and_to(shop: Any) -> None:
    store, s = shop
    before = snapshot(store)
    parsed = _message(f"Your order{BIDI} has{ZERO_WIDTH} shipped", f"Ann{BIDI}{ZERO_WIDTH} Tester\u202e")
    assert str(parsed["Subject"]) == "Your order has shipped"
    assert str(parsed["To"]) == "Ann Tester <ann@example.test>"
    assert not any(ch in clean_header_value(BIDI + ZERO_WIDTH + "x") for ch in BIDI + ZERO_WIDTH)
    assert snapshot(store) == before


def test_a_subject_made_of_bidi_overrides_by_the_template_is_cleaned(shop: Any) -> None:
    store, s = shop
    set_front(s, "subject", '"{{ customer.greeting }}\u202e gnippihs eerf"')
    d = find_campaign(Path(s.templates_dir), "weekly-picks")
    inputs = load_fixture(d, s.currency)
    factory = EmailFactory(s, d, catalogue=None, recommender=None, options=BuildOptions(run_key="t"))
    item = factory.prepare_inputs(fixture_member(inputs), inputs)
    assert isinstance(item, Prepared) and item.email is not None
    subject = str(message_from_bytes(item.email.data, policy=policy.default)["Subject"])
    assert "\u202e" not in subject and subject.endswith(" gnippihs eerf")


# ---------------------------------------------------------------------- public routes


@pytest.fixture
def public(shop: Any) -> Iterator[tuple[TestClient, Store, Settings]]:
    store, s = shop
    with TestClient(create_public_app(store, s), base_url="https://shop.example.test") as client:
        yield client, store, s


def _ann(store: Store) -> Any:
    ann = store.get_customer("ann@example.test")
    assert ann is not None
    return ann


def _links(store: Store, *, test: bool = False) -> dict[str, str]:
    ann = _ann(store)
    order = store.orders_for_customers([ann.id])[ann.id][0]

    def sign() -> dict[str, str]:
        return {
            "u": "/u/" + sign_token(KEY, UNSUBSCRIBE, customer=ann.id, campaign="weekly-picks"),
            "f": "/f/"
            + sign_token(
                KEY, FEEDBACK, order=order.id, customer=ann.id, campaign="thank-you-follow-up", rating=2
            ),
        }

    if test:
        with sign_as_test():
            return sign()
    return sign()


@pytest.mark.parametrize("route", ["u", "f"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_every_public_route(public: Any, route: str, method: str) -> None:
    """Only POST changes anything; GET and HEAD show the page; the rest are 405."""
    client, store, _ = public
    before = snapshot(store)
    url = _links(store)[route]
    body = {"List-Unsubscribe": "One-Click"} if route == "u" else {"rating": "2"}
    response = client.request(method, url, data=body if method not in ("GET", "HEAD", "OPTIONS") else None)
    after = snapshot(store)
    if method == "POST":
        assert response.status_code == 200
        if route == "u":
            assert store.is_suppressed("ann@example.test") and response.text == "You are unsubscribed."
        else:
            assert store.feedback_for(_ann_order_id(store), "thank-you-follow-up") is not None
        assert after != before
        return
    assert after == before
    if method in ("GET", "HEAD"):
        assert response.status_code == 200
        assert (response.text == "") if method == "HEAD" else ('<form method="post"' in response.text)
    else:
        assert response.status_code == 405


def _ann_order_id(store: Store) -> int:
    ann = _ann(store)
    return int(store.orders_for_customers([ann.id])[ann.id][0].id)


@pytest.mark.parametrize("route", ["u", "f"])
@pytest.mark.parametrize("method", METHODS)
def test_test_links_say_so_and_never_act(public: Any, route: str, method: str) -> None:
    client, store, _ = public
    before = snapshot(store)
    url = _links(store, test=True)[route]
    body = {"List-Unsubscribe": "One-Click"} if route == "u" else {"rating": "1", "comment": "x"}
    response = client.request(method, url, data=body if method not in ("GET", "HEAD", "OPTIONS") else None)
    assert snapshot(store) == before
    if method in ("GET", "POST"):
        assert response.status_code == 200 and ("test" in response.text.lower())
    elif method == "HEAD":
        assert response.status_code == 200
    else:
        assert response.status_code == 405


def test_tokens_with_hostile_field_values_are_refused(public: Any) -> None:
    client, store, _ = public
    before = snapshot(store)
    hostile: list[dict[str, Any]] = [
        {"customer": 10**30, "campaign": "c"},
        {"customer": -1, "campaign": "c"},
        {"customer": True, "campaign": "c"},
        {"customer": 1, "campaign": ["c"]},
        {"customer": 1, "campaign": "c" * 5000},
        {"customer": "1", "campaign": "c"},
    ]
    for fields in hostile:
        token = sign_token(KEY, UNSUBSCRIBE, **fields)
        response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 400 and "not valid" in response.text, fields
        token = sign_token(KEY, FEEDBACK, order=1, rating=3, **fields)
        assert client.post(f"/f/{token}").status_code == 400, fields
    assert snapshot(store) == before


def _signed_with(fields: dict[str, Any], purpose: str) -> str:
    raw = json.dumps(dict(fields, p=purpose, t=int(time.time())), separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    import hashlib
    import hmac

    mac = hmac.new(KEY, f"{purpose}.{payload}".encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(["u", "f"]),
    method=st.sampled_from(METHODS),
    token=st.one_of(
        st.text(max_size=300),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=3000),
        st.builds(
            _signed_with,
            st.dictionaries(
                st.sampled_from(["customer", "order", "campaign", "rating", "test", "p", "t"]),
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.integers(),
                    st.floats(allow_nan=True),
                    st.text(max_size=50),
                    st.lists(st.integers(), max_size=3),
                ),
            ),
            st.sampled_from([UNSUBSCRIBE, FEEDBACK]),
        ),
    ),
    body=st.binary(max_size=300),
)
def test_fuzz_public_token_routes(public: Any, route: str, method: str, token: str, body: bytes) -> None:
    """Any token, method and body: a page or a refusal, never a server error, and unless the token
    is a real, complete, non-test one for this route and the method POST, nothing changes."""
    client, store, _ = public
    before = snapshot(store)
    from urllib.parse import quote

    response = client.request(
        method,
        f"/{route}/{quote(token, safe='')}",
        content=body if method not in ("GET", "HEAD") else None,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (200, 400, 404, 405)
    assert "Traceback" not in response.text
    if method == "POST" and response.status_code == 200:
        # a complete, correctly signed token made up by the fuzzer acts like a real link, unless a test one
        fields = verify_token(KEY, token, UNSUBSCRIBE if route == "u" else FEEDBACK, 365)
        if fields.get(TEST_FIELD):
            assert snapshot(store) == before
    else:
        assert snapshot(store) == before


# ---------------------------------------------------------------------- preview: cross-origin and test sends


@pytest.mark.parametrize(
    "headers",
    [{}, {"origin": "null"}, {"origin": "https://evil.example"}, {"origin": "http://127.0.0.1:9999"}],
    ids=["no-origin", "null-origin", "foreign-origin", "other-port"],
)
def test_preview_posts_from_another_origin_are_refused(shop: Any, headers: dict[str, str]) -> None:
    from campaigns.senders import memory

    store, s = shop
    memory.clear()
    before = snapshot(store)
    bob = _bob(store)
    with preview_client(store, s) as client:
        token = client.csrf_token()
        for path in ("/campaigns/weekly-picks/send-test", "/campaigns/weekly-picks/customer"):
            response = client.post(
                path,
                data={"to": "thief@evil.example", "customer": str(bob.id), "q": "1", "csrf_token": token},
                headers=headers,
                csrf=False,
            )
            assert response.status_code == 403 and "cross-site request refused" in response.text
    assert memory.outbox("web") == []
    assert snapshot(store) == before


def _bob(store: Store) -> Any:
    bob = store.get_customer("bob@example.test")
    assert bob is not None
    return bob


@pytest.mark.parametrize("case", ["no-token", "wrong-token", "token-of-another-session"])
def test_preview_posts_need_the_sessions_token(shop: Any, case: str) -> None:
    from campaigns.senders import memory

    store, s = shop
    memory.clear()
    before = snapshot(store)
    with preview_client(store, s) as other:
        foreign = other.csrf_token()
    with preview_client(store, s) as client:
        client.csrf_token()  # has a session of its own
        data = {"to": "thief@evil.example", "customer": str(_bob(store).id)}
        if case == "wrong-token":
            data["csrf_token"] = "0" * 64
        elif case == "token-of-another-session":
            data["csrf_token"] = foreign
        response = client.post(
            "/campaigns/weekly-picks/send-test", data=data, headers={"origin": PREVIEW_ORIGIN}, csrf=False
        )
    assert response.status_code == 403 and "session token" in response.text
    assert memory.outbox("web") == []
    assert snapshot(store) == before


def test_a_test_send_carries_test_links_that_never_unsubscribe(shop: Any) -> None:
    from campaigns.senders import memory

    store, s = shop
    memory.clear()
    bob = _bob(store)
    with preview_client(store, s) as client:
        page = client.post(
            "/campaigns/weekly-picks/send-test", data={"to": "me@shop.example.test", "customer": str(bob.id)}
        ).text
    assert "sent to me@shop.example.test" in page
    [sent] = memory.outbox("web")
    parsed = message_from_bytes(sent.data, policy=policy.default)
    link = str(parsed["List-Unsubscribe"]).split("<", 1)[1].split(">", 1)[0]
    token = link.rsplit("/u/", 1)[1]
    assert verify_token(KEY, token, UNSUBSCRIBE, 365)[TEST_FIELD] is True
    before = snapshot(store)  # the test send's own event is in here; from now on nothing may change
    with TestClient(create_public_app(store, s), base_url="https://shop.example.test") as public_client:
        one_click = public_client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        page_click = public_client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click", "from": "page"})
    assert one_click.text == "This was a test email: nothing was changed."
    assert "This was a test" in page_click.text and "nobody was unsubscribed" in page_click.text
    assert not store.is_suppressed("bob@example.test")
    assert snapshot(store) == before


def test_preview_pages_sign_test_links_too(shop: Any) -> None:
    store, s = shop
    with preview_client(store, s) as client:
        html = client.get(f"/campaigns/weekly-picks/email.html?customer={_bob(store).id}").text
    token = html.split("/u/", 1)[1].split('"', 1)[0]
    assert verify_token(KEY, token, UNSUBSCRIBE, 365)[TEST_FIELD] is True


def test_a_real_send_still_signs_real_links(shop: Any) -> None:
    store, s = shop
    d = find_campaign(Path(s.templates_dir), "weekly-picks")
    inputs = load_fixture(d, s.currency)
    factory = EmailFactory(s, d, catalogue=None, recommender=None, options=BuildOptions(run_key="r"))
    item = factory.prepare_inputs(fixture_member(inputs), inputs)
    assert isinstance(item, Prepared)
    token = str(item.context["unsubscribe_url"]).rsplit("/u/", 1)[1]
    assert TEST_FIELD not in verify_token(KEY, token, UNSUBSCRIBE, 365)


def test_render_limits_can_be_passed_per_renderer(shop: Any) -> None:
    _, s = shop
    inject(s, "{% for i in range(50) %}{{ i }}{% endfor %}")
    with pytest.raises(RenderError, match="at most 10"):
        render_fixture(s, limits=RenderLimits(range_items=10))
    assert "49" in render_fixture(s).html
    assert replace(RenderLimits(), seconds=1.0).seconds == 1.0


def test_render_and_send_commands_refuse_a_hostile_template(
    shop: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`retain render` and `retain send` go through the same sandbox: a message naming file and line,
    exit 1, nothing run, nothing sent; the send leaves only its run record (no delivery rows)."""
    from campaigns.cli import main
    from campaigns.senders import memory

    store, s = shop
    memory.clear()
    marker = tmp_path / "pwned-send"
    line = inject(s, POPEN % marker, "thank-you-follow-up")
    for key, value in {
        "RETAIN_TEMPLATES_DIR": s.templates_dir,
        "RETAIN_SECRET_KEY": "web-test-secret-long-enough-for-the-key-check",
        "RETAIN_SENDER": "memory://web",
        "RETAIN_AS_OF": str(s.as_of),
        "RETAIN_QUIET_HOURS": "",
        "RETAIN_VAR_DIR": s.var_dir,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    before = snapshot(store)
    assert (
        main(["--db", s.database_url, "render", "thank-you-follow-up", "--customer", "bob@example.test"]) == 1
    )
    assert snapshot(store) == before
    assert main(["--db", s.database_url, "send", "thank-you-follow-up"]) == 1
    err = capsys.readouterr().err
    assert err.count(f"thank-you-follow-up.mjml:{line}: html: not allowed in a template") == 2
    assert "Traceback" not in err and not marker.exists()
    assert memory.outbox("web") == []
    after = snapshot(store)
    assert {name for name in before if before[name] != after[name]} <= {"runs"}
    assert after["deliveries"] == before["deliveries"] == []


def test_the_session_token_may_come_in_a_header(shop: Any) -> None:
    from campaigns.senders import memory

    store, s = shop
    memory.clear()
    with preview_client(store, s) as client:
        token = client.csrf_token()
        response = client.post(
            "/campaigns/weekly-picks/send-test",
            data={"to": "me@shop.example.test"},
            headers={"origin": PREVIEW_ORIGIN, "x-retain-csrf": token},
            csrf=False,
        )
    assert response.status_code == 200 and "sent to me@shop.example.test" in response.text
    assert len(memory.outbox("web")) == 1


def test_a_yaml_alias_bomb_in_segments_yaml_is_refused_too(shop: Any, tmp_path: Path) -> None:
    from campaigns.errors import ConfigError
    from campaigns.segments import load_segments

    store, s = shop
    before = snapshot(store)
    segments = tmp_path / "segments.yaml"
    segments.write_text("# segments\n" + BOMB.replace("description:", "vip:"))
    started = time.monotonic()
    with pytest.raises(
        ConfigError, match=r"segments.yaml:2: YAML anchor &a: anchors and aliases are not allowed"
    ):
        load_segments(segments)
    problems = lint(replace(s, segments_file=str(segments)))
    assert time.monotonic() - started < 20
    assert any("segments.yaml:2: YAML anchor &a" in p for p in problems), problems
    assert snapshot(store) == before
