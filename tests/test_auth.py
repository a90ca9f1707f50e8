"""Sign-in for a hosted copy: the allowlist's rules, the [auth] checks, and the gate in Streamlit's AppTest.

AppTest fakes the visitor through ``at.user`` (what ``st.user`` returns) and the
secrets through ``at.secrets``; the sign-in round trip with a real provider is in
``test_signin_browser.py``.
"""

import threading

import pytest
import streamlit as st
from streamlit.runtime.secrets import Secrets
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

from conftest import PROJECT_ROOT
from ui import auth
from ui.auth import Access, config_problem, decide, display_name, email_allowed, refusal

ENTRYPOINT = str(PROJECT_ROOT / "dashboard.py")
PAGE_FILES = sorted(p.relative_to(PROJECT_ROOT).as_posix() for p in (PROJECT_ROOT / "views").glob("*.py"))

AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "a-cookie-secret-long-enough-for-hs256",
    "client_id": "dashboard",
    "client_secret": "the-client-secret",
    "server_metadata_url": "https://accounts.example.com/.well-known/openid-configuration",
}
ANA = {"is_logged_in": True, "email": "ana@example.com", "email_verified": True, "name": "Ana Example", "sub": "1"}
MALLORY = {"is_logged_in": True, "email": "mallory@evil-example.com", "email_verified": True, "sub": "2"}


# --- The allowlist. ---------------------------------------------------------------------------------------------------


def test_an_address_entry_admits_exactly_that_address():
    allowlist = "ana@example.com"
    assert email_allowed("ana@example.com", allowlist)
    assert not email_allowed("bob@example.com", allowlist)
    assert not email_allowed("ana@example.com.evil.org", allowlist)
    assert not email_allowed("xana@example.com", allowlist)


def test_a_domain_entry_admits_that_domain_and_no_lookalike():
    allowlist = "@example.com"
    assert email_allowed("ana@example.com", allowlist)
    assert email_allowed("bob@example.com", allowlist)
    for lookalike in ("x@evil-example.com", "x@example.com.evil.org", "x@sub.example.com", "x@example.co",
                      "x@example.comx", "example.com", "x.example.com", "x@evil.com@example.com"):
        assert not email_allowed(lookalike, allowlist), lookalike


def test_matching_ignores_case_and_blanks_around_entries():
    allowlist = "  Ana@Example.COM ,@Partner.ORG,,  "
    assert email_allowed("ana@example.com", allowlist)
    assert email_allowed("  ANA@EXAMPLE.com ", allowlist)
    assert email_allowed("Bob@partner.org", allowlist)
    assert not email_allowed("bob@example.com", allowlist)


def test_an_empty_or_unset_allowlist_admits_any_signed_in_user():
    for allowlist in (None, "", "  ", " , ,"):
        assert email_allowed("anyone@anywhere.org", allowlist)
        assert decide({"is_logged_in": True}, allowlist) is Access.ADMITTED  # no email needed then


def test_an_entry_that_is_neither_address_nor_domain_admits_nobody_rather_than_everybody():
    assert not email_allowed("ana@example.com", "example.com")
    assert not email_allowed("example.com", "example.com")


def test_a_missing_or_malformed_email_is_not_allowed_by_a_list():
    for email in (None, "", "   ", "@example.com", "ana@", "ana", "ana@@example.com"):
        assert not email_allowed(email, "@example.com, ana"), email


def test_decide_signed_out_admitted_refused():
    allowlist = "@example.com"
    assert decide({}, allowlist) is Access.SIGNED_OUT
    assert decide({"email": "ana@example.com"}, allowlist) is Access.SIGNED_OUT  # claims without a sign-in
    assert decide({**ANA, "is_logged_in": False}, allowlist) is Access.SIGNED_OUT
    assert decide({**ANA, "is_logged_in": "true"}, allowlist) is Access.SIGNED_OUT  # only Streamlit's own True
    assert decide(ANA, allowlist) is Access.ADMITTED
    assert decide({k: v for k, v in ANA.items() if k != "email_verified"}, allowlist) is Access.ADMITTED
    assert decide(MALLORY, allowlist) is Access.REFUSED
    assert decide({"is_logged_in": True}, allowlist) is Access.REFUSED


def test_an_email_the_provider_has_not_verified_is_not_allowed():
    for unverified in (False, "false", "False"):
        assert decide({**ANA, "email_verified": unverified}, "@example.com") is Access.REFUSED
    assert "not verified" in refusal({**ANA, "email_verified": False})


def test_the_refusal_is_one_sentence_naming_the_email():
    sentence = refusal(MALLORY)
    assert sentence == "mallory@evil-example.com is not on this dashboard's allowlist; ask its operator for access."
    assert refusal({"is_logged_in": True}).startswith("Your account has no email address")
    assert refusal({**MALLORY, "email": "a_b*c@x.org"}).startswith(r"a\_b\*c@x.org ")  # no Markdown emphasis


def test_display_name_prefers_name_and_email():
    assert display_name(ANA) == "Ana Example (ana@example.com)"
    assert display_name({"email": "ana@example.com"}) == "ana@example.com"
    assert display_name({"name": "Ana"}) == "Ana"
    assert display_name({"sub": "1234"}) == "1234"


# --- The [auth] section. ----------------------------------------------------------------------------------------------


def test_a_complete_auth_section_has_no_problem():
    assert config_problem(AUTH) is None
    named = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "s", "okta": dict(list(AUTH.items())[2:]),
             "client_kwargs": {"prompt": "login"}}
    assert config_problem(named) is None
    assert auth.providers(named) == ["okta"]
    assert auth.providers(AUTH) == ["default"]


@pytest.mark.parametrize("broken, named", [
    ({}, "empty"),
    ("not a table", "not a table"),
    ({**AUTH, "cookie_secret": ""}, "cookie_secret"),
    ({k: v for k, v in AUTH.items() if k != "redirect_uri"}, "redirect_uri"),
    ({**AUTH, "redirect_uri": "http://localhost:8501/"}, "/oauth2callback"),
    ({**AUTH, "redirect_uri": "localhost:8501/oauth2callback"}, "absolute"),
    ({k: v for k, v in AUTH.items() if k != "client_secret"}, "client_secret"),
    ({**AUTH, "server_metadata_url": "accounts.google.com"}, "server_metadata_url"),
    ({"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "s"}, "no identity provider"),
    ({"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "s", "my_idp": {"client_id": "x"}}, "underscore"),
    ({"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "s", "okta": {"client_id": "x"}}, "[auth.okta] lacks"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_an_incomplete_auth_section_gets_one_sentence_without_secret_values(broken, named):
    problem = config_problem(broken)
    assert problem and named in problem
    assert problem.count(". ") == 0 and problem.endswith(".")
    assert "the-client-secret" not in problem and "a-cookie-secret" not in problem


def test_a_secrets_file_that_cannot_be_parsed_keeps_the_gate_closed(tmp_path, monkeypatch):
    broken = tmp_path / "secrets.toml"
    broken.write_text("[auth\nredirect_uri = ")
    with patch_config_options({"secrets.files": [str(broken)]}):
        monkeypatch.setattr(st, "secrets", Secrets())
        assert auth.auth_configured()
        assert "could not be parsed" in auth.setup_problem()
    with patch_config_options({"secrets.files": [str(tmp_path / "absent.toml")]}):
        monkeypatch.setattr(st, "secrets", Secrets())
        assert not auth.auth_configured()
        assert auth.setup_problem() is None


# --- The gate, in the app. --------------------------------------------------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch):
    """Any model load, prediction or image decode fails the run: a visitor who is not admitted must cause none."""
    from ui import cached

    def refuse(*args, **kwargs):
        raise AssertionError("the engine was used for a visitor who is not admitted")

    for name in ("load_model", "model_variant", "predict", "decode_sample", "decode_upload"):
        monkeypatch.setattr(cached, name, refuse)


def _wait_for_model_warm_up() -> None:
    # Loading a model starts a daemon thread tracing its passes; TensorFlow aborts the
    # interpreter if it exits mid-trace, as it can when this module runs on its own.
    for thread in threading.enumerate():
        if thread.name.endswith("(warm_up)"):
            thread.join(timeout=300)


def _app(script: str = ENTRYPOINT, user: dict | None = None, secrets: dict | None = None, **query) -> AppTest:
    at = AppTest.from_file(script, default_timeout=180)
    if secrets is not None:
        at.secrets["auth"] = secrets
    if user is not None:
        at.user = user
    at.query_params.update(query)
    at.run()
    _wait_for_model_warm_up()
    return at


def _widgets_and_media(at: AppTest) -> list[str]:
    kinds = {"Selectbox", "Multiselect", "FileUploader", "Dataframe", "Image", "Slider", "Radio", "Checkbox"}
    found = [type(e).__name__ for e in (*at.main, *at.sidebar)]
    found += [type(e).__name__ for block in (at.main, at.sidebar) for e in _walk(block)]
    return sorted({kind for kind in found if kind in kinds})


def _walk(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from _walk(child)


def test_without_auth_the_app_is_unchanged():
    at = _app()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="model_spec").value == "efficientnet_lite0"
    assert not [b for b in at.button if b.label in ("Sign in", "Sign out")]
    assert not [c for c in at.sidebar.caption if c.value.startswith("Signed in as")]


def test_a_signed_out_visitor_sees_only_the_sign_in_screen(no_engine):
    at = _app(secrets=AUTH, image_names="rocket")  # a shared link's parameters change nothing
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["CNN Attribution Dashboard"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert _widgets_and_media(at) == []
    assert not list(_walk(at.sidebar))
    assert "rocket" not in str(at.main)


@pytest.mark.parametrize("page", PAGE_FILES)
def test_a_view_run_on_its_own_passes_no_gate_so_shows_nothing(page, no_engine):
    # Deep links of a signed-out visitor land on the sign-in screen: tests/test_signin_browser.py, on a live server.
    from ui.selection import RUN_ALONE

    alone = _app(str(PROJECT_ROOT / page), secrets=AUTH)  # `streamlit run views/x.py`: no gate ran, so no content
    assert not alone.exception, alone.exception
    assert [e.value for e in alone.error] == [RUN_ALONE]
    assert _widgets_and_media(alone) == [] and not alone.title


def test_an_allowed_user_sees_the_dashboard_and_who_is_signed_in(monkeypatch):
    monkeypatch.setenv(auth.ALLOWLIST_ENV, "@example.com")
    at = _app(user=ANA, secrets=AUTH)
    assert not at.exception, at.exception
    assert at.sidebar.caption[0].value == "Signed in as Ana Example (ana@example.com)"
    assert at.sidebar.dataframe[0].value["class"].iloc[0] == "Egyptian Mau"
    at.sidebar.button(key=auth.SIGN_OUT_KEY).click().run()
    assert not at.exception, at.exception
    assert at.user == {"is_logged_in": False}
    assert [b.label for b in at.button] == ["Sign in"]
    assert _widgets_and_media(at) == []


def test_a_user_outside_the_allowlist_gets_one_sentence_and_sign_out(monkeypatch, no_engine):
    monkeypatch.setenv(auth.ALLOWLIST_ENV, "@example.com, bob@partner.org")
    for query in ({}, {"image_names": "rocket"}):
        at = _app(user=MALLORY, secrets=AUTH, **query)
        assert not at.exception, at.exception
        assert [w.value for w in at.warning] == [refusal(MALLORY)]
        assert [b.label for b in at.button] == ["Sign out"]
        assert not at.title and not at.markdown and not at.caption
        assert _widgets_and_media(at) == []
    at.button(key=auth.SIGN_OUT_KEY).click().run()
    assert [b.label for b in at.button] == ["Sign in"]


def test_misconfigured_auth_shows_one_sentence_and_nothing_else(monkeypatch, no_engine):
    monkeypatch.delenv(auth.ALLOWLIST_ENV, raising=False)
    at = _app(user=ANA, secrets={k: v for k, v in AUTH.items() if k != "cookie_secret"})
    assert not at.exception, at.exception
    (error,) = at.error
    assert "cookie_secret" in error.value and "closed" in error.value
    assert not at.button and not at.title and _widgets_and_media(at) == []


def test_missing_authlib_shows_one_sentence(monkeypatch, no_engine):
    monkeypatch.setattr(auth, "authlib_missing", lambda: True)
    at = _app(user=ANA, secrets=AUTH)
    (error,) = at.error
    assert "Authlib is not installed" in error.value
    assert not at.button and _widgets_and_media(at) == []


# --- Back to the link opened, after sign-in. --------------------------------------------------------------------------

PAGE_PATHS = ["", "layer_grid", "compare", "dataset", "learned"]


def test_the_return_cookie_names_a_page_and_its_query_and_reads_back():
    value = auth.return_cookie_value("layer_grid", {"grid_method": ["layercam"], "image_names": ["coffee", "rocket"]})
    assert set(value) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789%_.-~")  # no ; ' or space
    assert auth.parse_return(value, PAGE_PATHS) == auth.ReturnTarget(
        "layer_grid", {"grid_method": ["layercam"], "image_names": ["coffee", "rocket"]})
    assert auth.parse_return(auth.return_cookie_value("", {"image_names": ["rocket"]}), PAGE_PATHS) == \
        auth.ReturnTarget("", {"image_names": ["rocket"]})
    assert auth.parse_return(auth.return_cookie_value("", {}), PAGE_PATHS) is None  # the root itself: nothing to do


def test_a_query_too_long_for_a_cookie_is_dropped_and_the_page_kept():
    value = auth.return_cookie_value("compare", {"image_names": ["x" * 5000]})
    assert auth.parse_return(value, PAGE_PATHS) == auth.ReturnTarget("compare", {})


@pytest.mark.parametrize("value", [
    None, "", "https%3A%2F%2Fevil.example%2Fcompare", "%2F%2Fevil.example", "//evil.example", "/compare",
    "%2Fcompare", "..%2Fcompare", "compare%2F..%2F..%2Fetc", "evil.example%3Fa%3D1", "%5Cevil.example",
    "javascript%3Aalert(1)", "no_such_page", "compare" + "%41" * 3000,
])
def test_a_return_cookie_naming_anything_but_a_page_of_this_app_is_ignored(value):
    assert auth.parse_return(value, PAGE_PATHS) is None


def test_the_sign_in_screen_remembers_the_link_it_was_opened_with(no_engine):
    at = AppTest.from_file(ENTRYPOINT, default_timeout=180)
    at.secrets["auth"] = AUTH
    at.query_params.update({"grid_method": "layercam", "image_names": ["coffee", "rocket"]})
    at.switch_page("views/layer_grid.py")
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]
    (script,) = [e.proto.body for e in at.get("html")]
    expected = auth.return_cookie_value("layer_grid", {"grid_method": ["layercam"], "image_names": ["coffee", "rocket"]})
    assert f"{auth.RETURN_COOKIE}={expected};" in script


def test_a_visitor_back_from_sign_in_lands_on_the_link_they_opened(monkeypatch):
    cookie = auth.return_cookie_value("layer_grid", {"grid_method": ["layercam"], "image_names": ["rocket"]})
    monkeypatch.setattr(auth, "_return_cookie", lambda: cookie)  # what the browser sends after the provider
    at = _app(user=ANA, secrets=AUTH)  # sign-in lands on the root, with no query
    assert not at.exception, at.exception
    assert at.selectbox(key="grid_method").value == "layercam"
    assert at.sidebar.multiselect(key="image_names").value == ["rocket"]
    assert at.query_params["grid_method"] == "layercam"
    forget = [e.proto.body for e in at.get("html")]
    assert any(f"{auth.RETURN_COOKIE}=; path=/; max-age=0" in body for body in forget)  # served once
    at.switch_page("views/overview.py").run()
    assert not at.exception and not at.get("html")
    assert [t.value for t in at.title] == ["Model and predictions"]  # the link is not imposed again


def test_a_link_opened_by_a_signed_in_visitor_is_not_replaced_by_the_return_cookie(monkeypatch):
    monkeypatch.setattr(auth, "_return_cookie", lambda: auth.return_cookie_value("compare", {}))
    at = AppTest.from_file(ENTRYPOINT, default_timeout=180)
    at.secrets["auth"] = AUTH
    at.user = ANA
    at.query_params.update({"grid_method": "gradcam_plus_plus"})
    at.switch_page("views/layer_grid.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="grid_method").value == "gradcam_plus_plus"
