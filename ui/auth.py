"""Sign-in for a hosted copy: Streamlit's own OpenID Connect login, narrowed by an email allowlist.

Sign-in applies when the secrets Streamlit reads (``.streamlit/secrets.toml``, or the
files in its ``secrets.files`` option) have an ``[auth]`` section; without one the
dashboard is open, as before. ``ATTRIBUTION_DASHBOARD_ALLOWED_EMAILS`` then says who
may enter: comma-separated addresses (``ana@example.com``) and domains
(``@example.com``); unset or empty admits everyone who signs in.

This module imports no part of the engine: the gate decides before anything
touches a model or an image.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlencode

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

ALLOWLIST_ENV = "ATTRIBUTION_DASHBOARD_ALLOWED_EMAILS"
SIGN_OUT_KEY = "auth_sign_out"

_SHARED_KEYS = ("redirect_uri", "cookie_secret")
_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
_NOT_PROVIDERS = {"client_kwargs"}  # tables in [auth] that are settings, not named providers

# The link a signed-out visitor opened, kept in their browser through the provider's pages (Streamlit's
# sign-in always comes back to the app's root): a page of this app and its query, nothing else.
RETURN_COOKIE = "attribution_return_to"
RETURN_LIMIT = 3000  # characters of "page?query" kept: a cookie holds about 4 KB
RETURN_SECONDS = 900  # a sign-in started longer ago than this no longer brings the visitor back
_RETURN_CHECKED, _RETURN_FORGET = "_auth_return_checked", "_auth_return_forget"


class Access(enum.Enum):
    """What a visitor may see once sign-in applies."""

    SIGNED_OUT = "signed out"
    ADMITTED = "admitted"
    REFUSED = "refused"


# --- Pure helpers: no Streamlit calls, so the rules can be tested on their own. ---------------------------------------


def parse_allowlist(allowlist_text: str | None) -> tuple[frozenset[str], frozenset[str]]:
    """The allowlist's full addresses and its domains (without the ``@``), lower-cased.

    Entries are separated by commas; blanks around them are ignored. An entry
    that is neither ``name@domain`` nor ``@domain`` (say ``example.com``) is kept
    as an address that no email can equal, so a typo shuts people out rather
    than letting everyone in.
    """
    addresses: set[str] = set()
    domains: set[str] = set()
    for entry in (allowlist_text or "").split(","):
        entry = entry.strip().lower()
        if entry.startswith("@"):
            domains.add(entry[1:])
        elif entry:
            addresses.add(entry)
    return frozenset(addresses), frozenset(domains)


def allowlist_is_empty(allowlist_text: str | None) -> bool:
    """True when the allowlist has no entries at all, which admits every signed-in user."""
    return not any(entry.strip() for entry in (allowlist_text or "").split(","))


def email_allowed(email: str | None, allowlist_text: str | None) -> bool:
    """Whether ``email`` is on the allowlist: the same address, or an address at a listed domain.

    Case-insensitive and exact: ``@example.com`` admits ``x@example.com`` but not
    ``x@evil-example.com``, ``x@example.com.evil.org`` nor ``x@sub.example.com``.
    An empty allowlist admits any email, a missing one included.
    """
    if allowlist_is_empty(allowlist_text):
        return True
    email = (email or "").strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and domain) or "@" in domain:  # not one address: nothing to match safely
        return False
    addresses, domains = parse_allowlist(allowlist_text)
    return email in addresses or domain in domains


def email_unverified(user: Mapping[str, Any]) -> bool:
    """True when the provider says the email is not verified (some providers send the string ``"false"``)."""
    verified = user.get("email_verified")
    return verified is False or (isinstance(verified, str) and verified.strip().lower() == "false")


def decide(user: Mapping[str, Any], allowlist_text: str | None) -> Access:
    """What a visitor with these ``st.user`` claims may see."""
    if user.get("is_logged_in") is not True:
        return Access.SIGNED_OUT
    if allowlist_is_empty(allowlist_text):
        return Access.ADMITTED
    # An address the provider has not verified could be anyone's, so it never matches.
    if email_unverified(user) or not email_allowed(user.get("email"), allowlist_text):
        return Access.REFUSED
    return Access.ADMITTED


def display_name(user: Mapping[str, Any]) -> str:
    """Who is signed in, for people: ``"Ana Example (ana@example.com)"``, or whichever of the two exists."""
    name, email = (str(user.get(key) or "").strip() for key in ("name", "email"))
    if name and email and name.lower() != email.lower():
        return f"{name} ({email})"
    return name or email or str(user.get("sub") or "unknown user")


def refusal(user: Mapping[str, Any]) -> str:
    """The one sentence a signed-in user outside the allowlist reads (Markdown, their email escaped)."""
    email = escape_markdown(str(user.get("email") or "").strip())
    ask = "ask its operator for access"
    if not email:
        return f"Your account has no email address, so it is not on this dashboard's allowlist; {ask}."
    if email_unverified(user):
        return f"{email} is not verified by your sign-in provider, so it is not on this dashboard's allowlist; {ask}."
    return f"{email} is not on this dashboard's allowlist; {ask}."


def providers(auth: Mapping[str, Any]) -> list[str]:
    """Provider names for ``st.login``: ``"default"`` for settings in ``[auth]`` itself, then each ``[auth.name]``."""
    named = [key for key, value in auth.items() if isinstance(value, Mapping) and key not in _NOT_PROVIDERS]
    default = ["default"] if any(key in auth for key in _PROVIDER_KEYS) else []
    return default + named


def _is_url(value: object) -> bool:
    return isinstance(value, str) and re.match(r"https?://[^/\s]+", value) is not None


def config_problem(auth: object) -> str | None:
    """One sentence naming what is wrong with an ``[auth]`` section, or None when Streamlit can sign people in with it.

    The same requirements ``st.login`` checks, told up front; names keys, never values.
    """
    closed = "so the dashboard stays closed until the operator fixes the secrets"
    if not isinstance(auth, Mapping) or not auth:
        return f"Sign-in is misconfigured: the [auth] secrets section is empty or not a table, {closed}."
    missing = [key for key in _SHARED_KEYS if not auth.get(key)]
    if missing:
        return f"Sign-in is misconfigured: [auth] lacks {', '.join(missing)}, {closed}."
    redirect_uri = auth["redirect_uri"]
    if not _is_url(redirect_uri) or not str(redirect_uri).rstrip().endswith("/oauth2callback"):
        return (f"Sign-in is misconfigured: [auth] redirect_uri must be the app's absolute address ending in "
                f"/oauth2callback, {closed}.")
    names = providers(auth)
    if not names:
        return (f"Sign-in is misconfigured: [auth] names no identity provider "
                f"({', '.join(_PROVIDER_KEYS)}), {closed}.")
    for name in names:
        section = auth if name == "default" else auth[name]
        where = "[auth]" if name == "default" else f"[auth.{name}]"
        if "_" in name:  # Streamlit's login cannot route a provider name with an underscore
            return f"Sign-in is misconfigured: the provider name {where} must not contain an underscore, {closed}."
        missing = [key for key in _PROVIDER_KEYS if not section.get(key)]
        if missing:
            return f"Sign-in is misconfigured: {where} lacks {', '.join(missing)}, {closed}."
        if not _is_url(section["server_metadata_url"]):
            return f"Sign-in is misconfigured: {where} server_metadata_url must be an absolute address, {closed}."
    return None


class ReturnTarget(NamedTuple):
    """Where a visitor goes back to after signing in."""

    url_path: str  # a page of this app ("" for the default page)
    query: dict[str, list[str]]


def return_cookie_value(url_path: str, query: Mapping[str, Sequence[str]]) -> str:
    """The cookie value that remembers a page and its query: ``page?query``, percent-encoded.

    Past RETURN_LIMIT characters the query is dropped: the visitor still comes back to the page.
    """
    text = url_path + (f"?{urlencode({key: list(values) for key, values in query.items()}, doseq=True)}"
                       if query else "")
    return quote(text if len(text) <= RETURN_LIMIT else url_path, safe="")


def parse_return(value: str | None, url_paths: Collection[str]) -> ReturnTarget | None:
    """The page and query a cookie value names, or None unless the page is one of ``url_paths``.

    The value comes from the browser, so it is read as data: only the name of one of this app's
    pages and a query are taken from it, never an address, so it cannot send anyone elsewhere
    (``//evil.example``, ``https://…``, ``../x`` name no page and give None).
    """
    if not isinstance(value, str) or not value or len(value) > 3 * RETURN_LIMIT:  # encoding at most triples it
        return None
    path, _, query = unquote(value).partition("?")
    if path not in url_paths:
        return None
    return ReturnTarget(path, parse_qs(query, keep_blank_values=True))


def escape_markdown(text: str) -> str:
    """``text`` shown literally by Streamlit's Markdown (emails and names may hold ``_`` or ``*``)."""
    return re.sub(r"([\\`*_\[\]<>~$|#])", r"\\\1", text)


# --- What Streamlit is configured with. -------------------------------------------------------------------------------


_UNREADABLE = object()


def _auth_section() -> object:
    """The ``[auth]`` section (a dict), None without one, or ``_UNREADABLE`` when a secrets file cannot be parsed.

    Reads ``st.secrets`` at call time, so AppTest's ``at.secrets`` reaches it too.
    """
    try:
        secrets = st.secrets.to_dict()
    except StreamlitSecretNotFoundError as error:
        return None if getattr(error, "error_id", None) == "no-secrets-found" else _UNREADABLE
    return secrets.get("auth")


def auth_configured() -> bool:
    """True when sign-in applies: the secrets have an ``[auth]`` section.

    A secrets file that exists but cannot be parsed counts as configured: the
    operator may have meant to require sign-in, so the gate stays closed.
    """
    return _auth_section() is not None


def authlib_missing() -> bool:
    """True when the packages Streamlit's login needs (Authlib >= 1.3.2 and httpx) are not installed."""
    from streamlit.auth_util import is_authlib_installed

    return not is_authlib_installed() or importlib.util.find_spec("httpx") is None


def setup_problem() -> str | None:
    """One sentence when sign-in is configured but cannot work; None when it can (or is not configured)."""
    auth = _auth_section()
    if auth is None:
        return None
    if auth is _UNREADABLE:
        return ("Sign-in cannot be checked: a secrets file Streamlit reads could not be parsed, so the dashboard "
                "stays closed until the operator fixes it.")
    problem = config_problem(auth)
    if problem is None and authlib_missing():
        problem = ("Sign-in is configured but Authlib is not installed (pip install -r requirements.txt), so the "
                   "dashboard stays closed.")
    return problem


def _user() -> dict[str, Any]:
    return dict(st.user.to_dict())


# --- Drawing. ---------------------------------------------------------------------------------------------------------


def _set_return_cookie(value: str, seconds: int) -> None:
    """Set (or, with 0 seconds, delete) the return cookie in the visitor's browser: Streamlit can only read cookies.

    ``value`` is percent-encoded, so it holds no quote or semicolon to break out of the script.
    """
    st.html(f"<script>document.cookie = '{RETURN_COOKIE}={value}; path=/; max-age={seconds}; samesite=lax'"
            " + (location.protocol === 'https:' ? '; secure' : '');</script>", unsafe_allow_javascript=True)


def _return_cookie() -> str | None:
    """The return cookie as the browser sent it when this session connected."""
    return st.context.cookies.get(RETURN_COOKIE)


def _sign_in(url_path: str = "") -> None:
    st.title("CNN Attribution Dashboard")
    st.write("Sign in to use this dashboard.")
    auth = _auth_section()
    names = providers(auth) if isinstance(auth, Mapping) else []
    for name in names:
        label = "Sign in" if len(names) == 1 else f"Sign in with {'your account' if name == 'default' else name}"
        st.button(label, key=f"auth_sign_in_{name}", type="primary", on_click=st.login, args=(name,))
    # Sign-in comes back to the app's root: the link opened here is where return_after_sign_in sends the visitor.
    query = {key: st.query_params.get_all(key) for key in st.query_params}
    _set_return_cookie(return_cookie_value(url_path, query), RETURN_SECONDS)


def _refused() -> None:
    st.warning(refusal(_user()))
    st.button("Sign out", key=SIGN_OUT_KEY, on_click=st.logout)


def _screen() -> Callable[[], None] | None:
    """The one screen this visitor gets instead of the dashboard, or None when they may see it."""
    problem = setup_problem()
    if problem:
        def misconfigured() -> None:
            st.error(problem)

        return misconfigured
    access = decide(_user(), os.environ.get(ALLOWLIST_ENV))
    return {Access.SIGNED_OUT: _sign_in, Access.REFUSED: _refused, Access.ADMITTED: None}[access]


def gate(url_paths: Iterable[str] = ()) -> None:
    """Return when the visitor may see the dashboard; otherwise draw only the sign-in screen and stop the run.

    The screen is served through ``st.navigation`` so that no URL reaches a page
    script. It is registered under each of ``url_paths`` too, so a deep link lands on it
    without a "page not found" notice. Without ``[auth]`` this does nothing.
    """
    if not auth_configured():
        return
    screen = _screen()
    if screen is None:
        return
    pages = [st.Page(screen, title="Sign in", url_path="sign_in", default=True)]
    pages += [st.Page(screen, title="Sign in", url_path=path) for path in dict.fromkeys(url_paths) if path]
    page = st.navigation(pages, position="hidden")
    if screen is _sign_in:
        _sign_in(page.url_path)  # remembers the link this page was opened with
    else:
        page.run()
    st.stop()


def return_after_sign_in(pages: Sequence[Any], current: Any) -> None:
    """Once per session, right after st.navigation: a visitor who signed in from a link goes back to it.

    Only on the app's root without a query, where sign-in lands: a link opened by someone already
    signed in is never replaced. The cookie is deleted on the run after, once it has served.
    """
    if not auth_configured():
        return
    if st.session_state.pop(_RETURN_FORGET, False):
        _set_return_cookie("", 0)
    if st.session_state.get(_RETURN_CHECKED):
        return
    st.session_state[_RETURN_CHECKED] = True
    if current.url_path or len(st.query_params):
        return
    target = parse_return(_return_cookie(), [page.url_path for page in pages])
    if target is None:
        return
    st.session_state[_RETURN_FORGET] = True
    st.switch_page(next(page for page in pages if page.url_path == target.url_path), query_params=target.query)


def signed_in_line() -> None:
    """Who is signed in and a sign-out button, for the sidebar; nothing when sign-in is not configured."""
    if not auth_configured():
        return
    user = _user()
    if user.get("is_logged_in") is not True:
        return
    st.caption(f"Signed in as {escape_markdown(display_name(user))}")
    st.button("Sign out", key=SIGN_OUT_KEY, on_click=st.logout)
