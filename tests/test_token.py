"""Strict token-response parsing (RFC 6749 §5) and AuthToken behaviour."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from oauthsmtp import AuthToken, LoginRequired, TokenError
from oauthsmtp._oauth.tokenresponse import (
    MAX_TOKEN_RESPONSE_BYTES,
    TokenState,
    parse_token_response,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
JSON = "application/json"


def parse(body: object, status: int = 200, **kwargs: object) -> TokenState:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_token_response(status, JSON, raw, now=NOW, **kwargs)  # type: ignore[arg-type]


GOOD = {
    "access_token": "ya29.A0-access",
    "token_type": "Bearer",
    "expires_in": 3599,
    "refresh_token": "1//refresh",
    "scope": "https://mail.google.com/",
}


def test_good_response() -> None:
    """A complete answer gives every field, expiry relative to now."""
    state = parse(GOOD)
    assert state.access_token == "ya29.A0-access"
    assert state.refresh_token == "1//refresh"
    assert state.expires_at == NOW + timedelta(seconds=3599)
    assert state.scope == ("https://mail.google.com/",)
    assert state.server_response["expires_in"] == 3599


def test_bearer_is_case_insensitive() -> None:
    """token_type 'bearer' is Bearer (RFC 6749 §5.1)."""
    assert parse({**GOOD, "token_type": "bearer"}).token_type == "Bearer"


def test_unknown_fields_are_ignored_but_kept() -> None:
    """Unknown fields do not fail the parse and stay in server_response."""
    state = parse({**GOOD, "ext_expires_in": 4000, "id_token": "jwt"})
    assert state.server_response["ext_expires_in"] == 4000


def test_missing_expires_in_means_one_hour_at_most() -> None:
    """No expires_in: trusted for at most an hour."""
    body = {k: v for k, v in GOOD.items() if k != "expires_in"}
    assert parse(body).expires_at == NOW + timedelta(hours=1)


def test_expires_in_as_digit_string_is_accepted() -> None:
    """Some servers send expires_in as a string of digits."""
    assert parse({**GOOD, "expires_in": "60"}).expires_at == NOW + timedelta(seconds=60)


def test_missing_scope_means_as_requested() -> None:
    """RFC 6749 §5.1: an omitted scope is the requested one."""
    body = {k: v for k, v in GOOD.items() if k != "scope"}
    assert parse(body, requested_scope=("a", "b")).scope == ("a", "b")


def test_refresh_without_new_refresh_token_keeps_the_old_one() -> None:
    """Google does not rotate: the previous refresh token is kept."""
    body = {k: v for k, v in GOOD.items() if k != "refresh_token"}
    assert parse(body, previous_refresh_token="old").refresh_token == "old"
    assert parse(GOOD, previous_refresh_token="old").refresh_token == "1//refresh"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html><body>Welcome to the hotel Wi-Fi</body></html>", "JSON object"),
        (b'{"access_token": "a", "token_type": "Bearer"', "JSON object"),
        (b"[1, 2]", "JSON object"),
        (b"null", "JSON object"),
        (b"", "JSON object"),
        (b'{"access_token":"a","token_type":"Bearer","expires_in":NaN}', "JSON object"),
        (b'{"access_token":"a","access_token":"b","token_type":"Bearer"}', "JSON object"),
        (b"\xff\xfe{}", "JSON object"),
        (json.dumps({"token_type": "Bearer"}).encode(), "access_token"),
        (json.dumps({"access_token": "", "token_type": "Bearer"}).encode(), "access_token"),
        (json.dumps({"access_token": 12, "token_type": "Bearer"}).encode(), "access_token"),
        (json.dumps({"access_token": {"a": 1}, "token_type": "Bearer"}).encode(), "access_token"),
        (json.dumps({"access_token": "a\r\nb", "token_type": "Bearer"}).encode(), "characters"),
        (json.dumps({"access_token": "a"}).encode(), "token_type"),
        (json.dumps({"access_token": "a", "token_type": "mac"}).encode(), "Bearer"),
        (json.dumps({**GOOD, "refresh_token": ""}).encode(), "refresh_token"),
        (json.dumps({**GOOD, "refresh_token": 5}).encode(), "refresh_token"),
        (json.dumps({**GOOD, "scope": ["a", 1]}).encode(), "scope"),
        (json.dumps({**GOOD, "scope": {"a": 1}}).encode(), "scope"),
    ],
    ids=[
        "html",
        "truncated",
        "array",
        "null",
        "empty",
        "nan",
        "duplicate-keys",
        "bad-utf8",
        "no-access-token",
        "empty-access-token",
        "numeric-access-token",
        "object-access-token",
        "crlf-access-token",
        "no-token-type",
        "mac",
        "empty-refresh",
        "numeric-refresh",
        "list-scope-with-number",
        "object-scope",
    ],
)
def test_unusable_answers_raise_token_error(body: bytes, needle: str) -> None:
    """Bodies no correct server sends become a TokenError that names the problem."""
    with pytest.raises(TokenError) as info:
        parse(body)
    assert needle in str(info.value)


HOUR = timedelta(hours=1)
TEN_YEARS = timedelta(seconds=10 * 365 * 24 * 3600)


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        ("60", timedelta(seconds=60)),
        (" 3600 ", HOUR),
        ("90.5", timedelta(seconds=90.5)),
        (-1, timedelta(0)),
        (0, timedelta(0)),
        (1e300, TEN_YEARS),
        (b"9" * 5000, TEN_YEARS),
        ("9" * 5000, HOUR),
        ("\u00b2", HOUR),
        ("\u1369", HOUR),
        ("soon", HOUR),
        (True, HOUR),
        (None, HOUR),
        ({"s": 1}, HOUR),
    ],
    ids=[
        "digit-string",
        "padded-string",
        "decimal-string",
        "negative",
        "zero",
        "huge-float",
        "5000-digit-int",
        "5000-digit-string",
        "superscript-two",
        "ethiopic-one",
        "word",
        "bool",
        "null",
        "object",
    ],
)
def test_odd_expires_in_never_refuses_a_usable_token(
    expires_in: object, lifetime: timedelta
) -> None:
    """Numbers as strings are read; huge lifetimes clamped; junk counts as absent (issue 10)."""
    if isinstance(expires_in, bytes):  # a JSON number literal too long for int()
        body = json.dumps({**GOOD, "expires_in": 0}).encode()
        body = body.replace(b'"expires_in": 0', b'"expires_in": ' + expires_in)
    else:
        body = json.dumps({**GOOD, "expires_in": expires_in}).encode()
    state = parse(body)
    assert state.access_token == GOOD["access_token"]
    assert state.expires_at == NOW + lifetime


def test_scope_as_a_list_of_strings_is_read() -> None:
    """Some servers send scope as a JSON array: it is as good as the string."""
    assert parse({**GOOD, "scope": ["a b", "c"]}).scope == ("a", "b", "c")


def test_error_fields_are_shown_printable_only() -> None:
    """Control characters in error / error_description never reach a terminal."""
    body = {"error": "bad\x1b[31m", "error_description": "x\x07\r\ny"}
    with pytest.raises(TokenError) as info:
        parse(body, status=400)
    assert "\x1b" not in str(info.value)
    assert "\x07" not in str(info.value)
    assert "\n" not in str(info.value)


def test_html_body_is_not_echoed() -> None:
    """A captive portal's page is described, not copied into the message."""
    with pytest.raises(TokenError) as info:
        parse_token_response(200, "text/html", b"<html>secret-portal-content</html>", now=NOW)
    assert "secret-portal-content" not in str(info.value)
    assert "text/html" in str(info.value)


def test_error_answer_carries_rfc6749_fields() -> None:
    """§5.2 errors keep error and error_description."""
    body = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    with pytest.raises(TokenError) as info:
        parse(body, status=400)
    assert info.value.error == "invalid_grant"
    assert info.value.error_description == "Token has been expired or revoked."
    assert info.value.status == 400
    assert "invalid_grant" in str(info.value)


def test_error_answer_with_200_is_still_an_error() -> None:
    """A 200 with an error object is an error."""
    with pytest.raises(TokenError) as info:
        parse({"error": "invalid_request"})
    assert info.value.error == "invalid_request"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_refused(status: int) -> None:
    """Token requests never follow redirects."""
    with pytest.raises(TokenError, match="redirect"):
        parse(b"", status=status)


def test_server_error_without_oauth_error() -> None:
    """A 503 page says the status and what to do."""
    with pytest.raises(TokenError) as info:
        parse(b"Service Unavailable", status=503)
    assert info.value.status == 503
    assert "503" in str(info.value)


def test_oversized_body_is_refused() -> None:
    """Bodies above the cap are refused."""
    with pytest.raises(TokenError, match="more than"):
        parse(b" " * (MAX_TOKEN_RESPONSE_BYTES + 1))


def test_secrets_never_in_messages() -> None:
    """No error message quotes the access or refresh token."""
    for body in ({**GOOD, "token_type": "mac"}, {**GOOD, "refresh_token": 5}):
        with pytest.raises(TokenError) as info:
            parse(body)
        assert "ya29" not in str(info.value)
        assert "1//refresh" not in str(info.value)


# -- AuthToken -----------------------------------------------------------------------


def test_repr_masks_secrets() -> None:
    """Neither repr of the token nor of server_response shows a token."""
    token = AuthToken(parse({**GOOD, "id_token": "jwt-secret"}), account="me@example.com")
    text = repr(token) + repr(token.server_response) + repr(token.state)
    assert "ya29" not in text
    assert "1//refresh" not in text
    assert "jwt-secret" not in text
    assert "me@example.com" in text


def test_server_response_is_read_only() -> None:
    """server_response cannot be modified."""
    token = AuthToken(parse(GOOD))
    with pytest.raises(TypeError):
        token.server_response["access_token"] = "x"  # type: ignore[index]


def test_valid_follows_expiry_with_leeway() -> None:
    """valid turns False within the leeway of expiry."""
    clock = [NOW]
    token = AuthToken(parse(GOOD), clock=lambda: clock[0], leeway=timedelta(seconds=60))
    assert token.valid
    clock[0] = NOW + timedelta(seconds=3599 - 61)
    assert token.valid
    clock[0] = NOW + timedelta(seconds=3599 - 59)
    assert not token.valid
    assert token.expires_at is not None
    assert token.expires_at.tzinfo is not None


def _refresher(counter: list[int]):  # type: ignore[no-untyped-def]
    def refresh(old: TokenState) -> TokenState:
        counter.append(1)
        return TokenState(
            access_token=f"new-{len(counter)}",
            refresh_token=old.refresh_token,
            expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
        )

    return refresh


def test_access_token_refreshes_when_expired() -> None:
    """Reading access_token refreshes first when expired, not otherwise."""
    calls: list[int] = []
    expired = TokenState(access_token="old", refresh_token="r", expires_at=NOW)
    token = AuthToken(expired, refresher=_refresher(calls))
    assert token.access_token == "new-1"
    assert token.access_token == "new-1"
    assert len(calls) == 1
    assert token.valid


def test_eight_threads_on_one_expired_token_refresh_once() -> None:
    """Single flight inside one AuthToken."""
    calls: list[int] = []
    token = AuthToken(
        TokenState(access_token="old", refresh_token="r", expires_at=NOW),
        refresher=_refresher(calls),
    )
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def worker() -> None:
        barrier.wait()
        seen.append(token.access_token)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert seen == ["new-1"] * 8


def test_refresh_without_refresher_says_what_to_do() -> None:
    """A detached token cannot refresh itself: LoginRequired with a hint."""
    token = AuthToken(parse(GOOD))
    with pytest.raises(LoginRequired, match="refresh_token"):
        token.refresh()


def test_json_round_trip() -> None:
    """to_json/from_json keep every field the store needs."""
    token = AuthToken(parse(GOOD), account="a@example.com")
    copy = AuthToken.from_json(token.to_json())
    assert copy.state.access_token == token.state.access_token
    assert copy.refresh_token == token.refresh_token
    assert copy.expires_at == token.expires_at
    assert copy.scope == token.scope
    assert len(token.to_json()) < 1000


@pytest.mark.parametrize(
    "text",
    ["", "[]", "{}", '{"access_token": ""}', '{"access_token":"a","expires_at":"yesterday"}',
     '{"access_token":"a","expires_at":"2026-01-01T00:00:00"}',
     '{"access_token":"a","token_type":"mac"}'],
)  # fmt: skip
def test_from_json_refuses_malformed(text: str) -> None:
    """A malformed serialized token raises ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by case
        AuthToken.from_json(text)


def _stored(**fields: object) -> str:
    return json.dumps({"access_token": "at", "refresh_token": "rt", **fields})


@pytest.mark.parametrize(
    "text",
    [
        _stored(expires_at="0001-01-01T00:00:00+01:00"),  # OverflowError in astimezone
        _stored(expires_at="0001-01-01T00:00:00+00:00"),
        _stored(expires_at="9999-12-31T23:59:59-01:00"),
        _stored(expires_at="9999-12-31T23:59:59+00:00"),
        _stored(obtained_at="0001-01-01T00:00:00+00:00"),
        _stored(expires_at=["2026-01-01T00:00:00+00:00"]),
        _stored(expires_at=1e308),
        _stored(scope=["a"]),
        _stored(refresh_token=0),
        '{"access_token":"at","access_token":"other"}',  # duplicate key
        '{"access_token":"at","expires_at":NaN}',
        "[" * 100_000,
        '{"access_token":"at\udc00"}',  # a lone surrogate, as a store might return
        "\udc00",
        _stored(access_token="at\udc00"),  # the same, written as a JSON escape
        _stored(access_token="at\x01x"),
        _stored(refresh_token="rt\ud800"),
        _stored(refresh_token="rt\n"),
    ],
    ids=lambda text: text[:48],
)
def test_from_json_treats_stored_text_as_untrusted(text: str) -> None:
    """Out-of-range dates, wrong types, duplicates, NaN, deep nesting: ValueError, nothing else."""
    with pytest.raises(ValueError, match="not a serialized AuthToken"):
        AuthToken.from_json(text)


@pytest.mark.parametrize(
    ("description", "advice"),
    [
        ("AADSTS700025: Client is public so neither 'client_assertion' nor ...", "public client"),
        ("AADSTS7000218: The request body must contain ... 'client_secret'", "expects a client"),
    ],
)
def test_microsoft_client_type_errors_say_what_to_fix(description: str, advice: str) -> None:
    """AADSTS700025 / AADSTS7000218 map to the fix (docs/troubleshooting.md)."""
    with pytest.raises(TokenError) as info:
        parse({"error": "invalid_client", "error_description": description}, status=401)
    assert advice in str(info.value)
    assert info.value.error == "invalid_client"


def _id_token(claims: dict[str, object]) -> str:
    import base64

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_identity_is_kept_with_the_token_and_across_refreshes() -> None:
    """The login's id_token names the account; the state keeps it in to_dict/from_dict and a
    refresh answer without an id_token keeps the previous one."""
    now = datetime.now(timezone.utc)
    login = json.dumps(
        {
            "access_token": "a1",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "r1",
            "id_token": _id_token({"aud": "cid", "email": "me@example.org"}),
        }
    ).encode()
    state = parse_token_response(200, "application/json", login, now=now, client_id="cid")
    assert state.identity == ("me@example.org",)
    assert TokenState.from_dict(json.loads(json.dumps(state.to_dict()))).identity == (
        "me@example.org",
    )
    refresh = json.dumps({"access_token": "a2", "token_type": "Bearer"}).encode()
    renewed = parse_token_response(
        200, "application/json", refresh, now=now, client_id="cid",
        previous_refresh_token="r1", previous_identity=state.identity,
    )  # fmt: skip
    assert renewed.identity == ("me@example.org",)
    # An id_token for another client names nobody; without client_id nothing is read.
    elsewhere = json.loads(login)
    elsewhere["id_token"] = _id_token({"aud": "another-client", "email": "me@example.org"})
    other = parse_token_response(
        200, "application/json", json.dumps(elsewhere).encode(), now=now, client_id="cid"
    )
    assert other.identity == ()
    assert parse_token_response(200, "application/json", login, now=now).identity == ()
    # Stored before identity existed: none.
    assert "identity" not in TokenState(access_token="a").to_dict()


@pytest.mark.parametrize(
    "identity", ["me@example.org", ["no-at-sign"], [1], ["a@b"] * 9, ["bad\nname@x"]]
)
def test_a_malformed_stored_identity_is_refused(identity: object) -> None:
    data = {**TokenState(access_token="a").to_dict(), "identity": identity}
    with pytest.raises(ValueError, match="identity"):
        TokenState.from_dict(data)
