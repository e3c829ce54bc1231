"""PKCE (RFC 7636), state, the authorization URL and callback judgement (pure logic)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from oauthsmtp import AccessDenied, AuthorizationError, CallbackError, OAuth2Parameters
from oauthsmtp._oauth.authz import Outcome, build_request, check_callback
from oauthsmtp._oauth.pkce import VERIFIER_PATTERN, make_state, make_verifier, s256_challenge

RFC7636_OCTETS = bytes(
    [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
     22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121]
)  # fmt: skip


def params(**overrides: object) -> OAuth2Parameters:
    values: dict[str, object] = {
        "client_id": "client-1",
        "client_secret": "secret-1",
        "auth_url": "https://auth.example.com/authorize",
        "token_url": "https://auth.example.com/token",
        "scope": "https://mail.google.com/ email",
        "redirect_url": "http://localhost:9000/callback",
    }
    values.update(overrides)
    return OAuth2Parameters(**values)  # type: ignore[arg-type]


def test_rfc7636_appendix_b_vector() -> None:
    """The verifier and S256 challenge match RFC 7636 Appendix B."""
    verifier = make_verifier(RFC7636_OCTETS)
    assert verifier == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_ten_thousand_verifiers_are_unique_and_well_formed() -> None:
    """Verifiers are 43-128 unreserved characters, fresh every time."""
    verifiers = {make_verifier() for _ in range(10_000)}
    assert len(verifiers) == 10_000
    assert all(VERIFIER_PATTERN.match(v) for v in verifiers)
    assert all(len(v) == 43 for v in verifiers)  # 32 octets = 256 bits


def test_challenge_is_b64url_sha256_of_verifier() -> None:
    """challenge == BASE64URL(SHA256(verifier)) without padding."""
    verifier = make_verifier()
    digest = hashlib.sha256(verifier.encode()).digest()
    assert s256_challenge(verifier) == base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_short_entropy_is_refused() -> None:
    """Fewer than 32 octets would give less than 256 bits."""
    with pytest.raises(ValueError, match="32"):
        make_verifier(b"x" * 31)


def test_states_are_long_and_unique() -> None:
    """state carries at least 128 bits and never repeats."""
    states = {make_state() for _ in range(1000)}
    assert len(states) == 1000
    assert all(len(base64.urlsafe_b64decode(s + "=")) >= 16 for s in states)


def test_authorization_url_carries_pkce_s256_and_state() -> None:
    """Every request has S256, a fresh state and the verbatim redirect URI."""
    p = params(extra_auth_params={"access_type": "offline", "prompt": "consent"})
    first, second = build_request(p), build_request(p)
    query = parse_qs(urlsplit(first.url).query, strict_parsing=True)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["client-1"]
    assert query["redirect_uri"] == ["http://localhost:9000/callback"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [s256_challenge(first.code_verifier)]
    assert query["state"] == [first.state]
    assert query["scope"] == ["https://mail.google.com/ email"]
    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"]
    assert "client_secret" not in query
    assert first.state != second.state
    assert first.code_verifier != second.code_verifier
    assert first.code_verifier not in first.url
    assert first.redirect_uri == "http://localhost:9000/callback"


def test_request_repr_hides_state_and_verifier() -> None:
    """The verifier is a secret: never in repr."""
    request = build_request(params())
    assert request.code_verifier not in repr(request)
    assert request.state not in repr(request)


def test_existing_query_in_auth_url_is_kept() -> None:
    """An authorization URL with its own query keeps it."""
    request = build_request(params(auth_url="https://auth.example.com/authorize?tenant=x"))
    assert urlsplit(request.url).query.startswith("tenant=x&response_type=code")


# -- callback judgement ------------------------------------------------------------


@pytest.fixture
def request_() -> object:
    return build_request(params(), state="S-123", code_verifier=make_verifier())


def judge(request: object, target: str, method: str = "GET") -> object:
    return check_callback(request, method, target)  # type: ignore[arg-type]


def test_valid_callback_completes(request_: object) -> None:
    """The right path, state and a code complete the flow."""
    verdict = judge(request_, "/callback?code=abc&state=S-123")
    assert verdict.outcome is Outcome.CODE  # type: ignore[attr-defined]
    assert verdict.code == "abc"  # type: ignore[attr-defined]
    assert "abc" not in repr(verdict)


@pytest.mark.parametrize(
    "target",
    [
        "/callback",
        "/callback?",
        "/callback?code=abc",
        "/callback?code=abc&state=wrong",
        "/callback?code=abc&state=s-123",
        "/callback?code=abc&state=S-123%20",
        "/callback?code=abc&state=S-123+",
        "/callback?code=abc&state=S%252D123",
        "/callback?code=abc&state=",
        "/callback?code=abc&state=S-123&state=S-123",
        "/callback?code=abc&state=S-123&state=evil",
        "/callback?code=abc&state=%FF%FE",
    ],
    ids=[
        "no-query",
        "empty-query",
        "no-state",
        "wrong",
        "case",
        "trailing-space",
        "plus-space",
        "double-encoded",
        "empty",
        "duplicate",
        "duplicate-other",
        "invalid-utf8",
    ],
)
def test_untrusted_state_is_ignored_not_consumed(request_: object, target: str) -> None:
    """Missing, wrong, case-changed, padded, double-encoded or duplicate state: 400, ignored."""
    verdict = judge(request_, target)
    assert verdict.outcome is Outcome.IGNORE  # type: ignore[attr-defined]
    assert verdict.status == 400  # type: ignore[attr-defined]
    assert verdict.code is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("target", "method", "status"),
    [
        ("/", "GET", 404),
        ("/favicon.ico", "GET", 404),
        ("/callback/x?code=a&state=S-123", "GET", 404),
        ("/Callback?code=a&state=S-123", "GET", 404),
        ("http://evil/callback?code=a&state=S-123", "GET", 404),
        ("/callback?code=a&state=S-123", "POST", 405),
        ("/callback?code=a&state=S-123", "HEAD", 405),
        ("/callback?code=a&state=S-123", "OPTIONS", 405),
    ],
)
def test_wrong_path_or_method_is_ignored(
    request_: object, target: str, method: str, status: int
) -> None:
    """Only GET on the exact redirect path counts (RFC 8252 §8.10)."""
    verdict = judge(request_, target, method)
    assert verdict.outcome is Outcome.IGNORE  # type: ignore[attr-defined]
    assert verdict.status == status  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "code",
    ["", "x" * 2049, "a%0D%0Ab", "a%00b", "a%0Ab", "caf%C3%A9"],
    ids=["empty", "too-long", "crlf", "nul", "lf", "non-ascii"],
)
def test_malformed_codes_are_ignored(request_: object, code: str) -> None:
    """An empty, oversized or control-character code is never exchanged."""
    verdict = judge(request_, f"/callback?code={code}&state=S-123")
    assert verdict.outcome is Outcome.IGNORE  # type: ignore[attr-defined]
    assert verdict.status == 400  # type: ignore[attr-defined]


def test_access_token_in_callback_is_not_a_code(request_: object) -> None:
    """An implicit-grant style response carries no code: ignored."""
    verdict = judge(request_, "/callback?access_token=leaked&state=S-123")
    assert verdict.outcome is Outcome.IGNORE  # type: ignore[attr-defined]


def test_access_denied_ends_the_flow(request_: object) -> None:
    """error=access_denied with the right state becomes AccessDenied."""
    verdict = judge(
        request_, "/callback?error=access_denied&error_description=User+said+no&state=S-123"
    )
    assert verdict.outcome is Outcome.ERROR  # type: ignore[attr-defined]
    error = verdict.error  # type: ignore[attr-defined]
    assert isinstance(error, AccessDenied)
    assert error.error == "access_denied"
    assert "User said no" in str(error)


def test_other_errors_end_the_flow(request_: object) -> None:
    """Other RFC 6749 §4.1.2.1 errors become AuthorizationError with the code."""
    verdict = judge(request_, "/callback?error=invalid_scope&state=S-123")
    error = verdict.error  # type: ignore[attr-defined]
    assert type(error) is AuthorizationError
    assert error.error == "invalid_scope"


def test_error_without_matching_state_is_ignored(request_: object) -> None:
    """An error response must carry the pending state too."""
    verdict = judge(request_, "/callback?error=access_denied&state=other")
    assert verdict.outcome is Outcome.IGNORE  # type: ignore[attr-defined]


def test_issuer_mismatch_aborts(request_: object) -> None:
    """iss other than the expected issuer aborts (RFC 9207 §2.4)."""
    target = "/callback?code=abc&state=S-123&iss=" + quote("https://evil.example", safe="")
    verdict = judge(request_, target)
    assert verdict.outcome is Outcome.ERROR  # type: ignore[attr-defined]
    assert isinstance(verdict.error, CallbackError)  # type: ignore[attr-defined]
    assert "evil.example" in str(verdict.error)  # type: ignore[attr-defined]
    assert verdict.code is None  # type: ignore[attr-defined]


def test_matching_issuer_is_accepted(request_: object) -> None:
    """iss equal to the expected issuer passes."""
    target = "/callback?code=abc&state=S-123&iss=" + quote("https://auth.example.com", safe="")
    assert judge(request_, target).outcome is Outcome.CODE  # type: ignore[attr-defined]


def test_duplicate_iss_or_code_aborts(request_: object) -> None:
    """A repeated iss or code cannot be trusted."""
    for extra in ("&iss=https%3A%2F%2Fauth.example.com&iss=x", "&code=other"):
        verdict = judge(request_, "/callback?code=abc&state=S-123" + extra)
        assert verdict.outcome is Outcome.ERROR  # type: ignore[attr-defined]
        assert isinstance(verdict.error, CallbackError)  # type: ignore[attr-defined]


def test_flow_for_another_redirect_path_is_rejected() -> None:
    """A callback on /microsoft while the Google flow (on /google) is pending is rejected."""
    google = build_request(params(redirect_url="http://localhost:9000/google"), state="G")
    verdict = check_callback(google, "GET", "/microsoft?code=abc&state=G")
    assert verdict.outcome is Outcome.IGNORE
    assert verdict.status == 404


def test_error_texts_from_the_callback_are_made_printable() -> None:
    """Terminal escapes or a 100 KB description in error / error_description are neutralised."""

    request = build_request(
        OAuth2Parameters(
            client_id="c",
            auth_url="https://a.example/auth",
            token_url="https://a.example/token",
            redirect_url="http://127.0.0.1:9/cb",
        ),
        state="S" * 43,
    )
    target = "/cb?state=" + "S" * 43 + "&error=bad%1b%5B31m&error_description=" + "x%07" * 50_000
    verdict = check_callback(request, "GET", target[:60_000])
    assert verdict.outcome is Outcome.ERROR
    assert verdict.error is not None
    message = str(verdict.error)
    assert "\x1b" not in message
    assert "\x07" not in message
    assert len(message) < 1000
