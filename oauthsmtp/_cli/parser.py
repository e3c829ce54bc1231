"""The argument parser of the ``oauthsmtp`` command: every command, flag and help text.

:func:`build_parser` returns a parser whose errors are one line on stderr
(``oauthsmtp: error: ...``) and exit code 2. Values are checked as they are parsed
(:mod:`oauthsmtp._cli.values`), so a command only ever sees well-formed values.
"""

from __future__ import annotations

import argparse

from oauthsmtp._version import __version__

from . import values
from .exits import EXIT_USAGE, PROG

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["SECURITY_CHOICES", "build_parser"]

SECURITY_CHOICES = ("starttls", "ssl", "none")

ENVIRONMENT = """\
exit codes: 0 success, 1 failure, 2 bad usage, 3 login required
environment:
  OAUTHSMTP_HOME   folder for accounts.json (and tokens/ with the file store)
  OAUTHSMTP_STORE  keyring (default), file (0600 files; for servers without a keyring),
                   or redis://host:port/db (rediss:// for TLS; shared by many workers)
  OAUTHSMTP_REDIS_KEY  a Fernet key: encrypts the tokens kept in Redis
  BROWSER          the browser command, as Python's webbrowser module reads it
  SSL_CERT_FILE    a PEM file of CA certificates to trust in addition to the system's,
                   for the token endpoint and the SMTP server (e.g. the dev server's CA)
"""

_CLIENT_CREDENTIAL_HELP = (
    "the OAuth client secret (Gmail desktop clients have one; Microsoft public clients "
    "none). Visible to other local users in the process list while login runs: prefer "
    "--client-secret-file. Write --client-secret=VALUE when it starts with '-'"
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``oauthsmtp: error: MESSAGE (see: PROG --help)`` and exit with 2."""
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see: {self.prog} --help)\n")


def _add_debug(parser: argparse.ArgumentParser, *, top: bool) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        # After the command too; SUPPRESS keeps a --debug given before it.
        default=False if top else argparse.SUPPRESS,
        help="protocol detail and tracebacks on stderr (secrets stay masked)",
    )


def _account(parser: argparse.ArgumentParser, *, required: bool = True, help_: str = "") -> None:
    parser.add_argument(
        "--account",
        required=required,
        metavar="EMAIL",
        type=values.account,
        help=help_ or "the mailbox address (the name the login was recorded under)",
    )


def _smtp_flags(parser: argparse.ArgumentParser, *, purpose: str) -> None:
    parser.add_argument(
        "--smtp-host",
        metavar="HOST",
        type=values.hostname,
        help=f"the SMTP server's host name {purpose}",
    )
    parser.add_argument(
        "--smtp-port",
        metavar="PORT",
        type=values.port,
        help=f"the SMTP server's port, 1-65535 {purpose}",
    )
    parser.add_argument(
        "--security",
        choices=SECURITY_CHOICES,
        help=f"starttls, ssl (implicit TLS) or none (no TLS: loopback only) {purpose}",
    )


def _transport_flags(parser: argparse.ArgumentParser, *, purpose: str) -> None:
    parser.add_argument(
        "--transport",
        choices=("smtp", "api", "auto"),
        help="send over SMTP, or through the provider's HTTP API (Gmail API, Microsoft "
        "Graph: for tenants with SMTP AUTH off, or Gmail's gmail.send scope), or auto: SMTP, "
        "switching to the API only when SMTP AUTH is refused as disabled (5.7.139, 5.7.30) "
        f"{purpose}",
    )
    parser.add_argument(
        "--api-url",
        metavar="URL",
        type=values.url,
        help="the API's base URL when not the public one (national clouds, the "
        f"development provider) {purpose}",
    )


def _login(sub: argparse._SubParsersAction[Parser]) -> None:
    login = _command(
        sub,
        "login",
        "log in once through the browser and remember the account",
        "Open the browser to authorize oauthsmtp for an account, save the token in the "
        "token store and record the account's settings (provider, client id, SMTP server) "
        "so that other commands need only --account.\n\n"
        "examples:\n"
        "  oauthsmtp login --account me@gmail.com --provider gmail \\\n"
        "      --client-id ID.apps.googleusercontent.com --client-secret-file secret.txt\n"
        "  oauthsmtp login --account me@contoso.com --provider microsoft \\\n"
        "      --client-id 00000000-0000-0000-0000-000000000000 --tenant organizations\n"
        "  oauthsmtp login --account me@gmail.com      # again, with the recorded settings\n\n"
        "On a machine without a browser: --flow device (Microsoft: enter a code on any\n"
        "device), --flow paste (open the URL anywhere, paste back the address it ends on),\n"
        "--no-browser with a port forward (ssh -L 9000:127.0.0.1:9000 USER@THIS-MACHINE),\n"
        "or --refresh-token-file to import a login made on another machine.\n\n"
        "app-only (no browser, no person; renewed by the same grant, see docs/app-only.md):\n"
        "  oauthsmtp login --account shared@contoso.com --provider microsoft-app \\\n"
        "      --client-id ID --tenant contoso.onmicrosoft.com \\\n"
        "      --private-key-file app.key --certificate-file app.crt  # or --client-secret-file\n"
        "  oauthsmtp login --account user@example.com --provider google-service-account \\\n"
        "      --key-file service-account.json",
    )
    _account(login, help_="the mailbox address; also the SMTP user name")
    login.add_argument(
        "--provider",
        choices=["gmail", "microsoft", "custom", "microsoft-app", "google-service-account"],
        help="the provider preset (custom: give --auth-url, --token-url, --scope and "
        "--smtp-host; microsoft-app and google-service-account: app-only, no browser); "
        "needed on the first login, remembered after",
    )
    login.add_argument(
        "--client-id",
        metavar="ID",
        type=values.client_id,
        help="the OAuth client id from the provider's app registration; remembered",
    )
    secret = login.add_mutually_exclusive_group()
    secret.add_argument("--client-secret", metavar="SECRET", help=_CLIENT_CREDENTIAL_HELP)
    secret.add_argument(
        "--client-secret-file",
        metavar="FILE",
        help="read the client secret from FILE (its first line), or from standard input "
        "with '-'; not visible in the process list",
    )
    login.add_argument(
        "--tenant",
        metavar="TENANT",
        type=values.tenant,
        help="microsoft: common (default), organizations, consumers or a tenant ID",
    )
    login.add_argument(
        "--auth-url", metavar="URL", type=values.url, help="custom: the authorization endpoint"
    )
    login.add_argument(
        "--token-url", metavar="URL", type=values.url, help="custom: the token endpoint"
    )
    login.add_argument(
        "--scope", metavar="SCOPES", type=values.scope, help="custom: space-separated scopes"
    )
    login.add_argument(
        "--revocation-url",
        metavar="URL",
        type=values.url,
        help="custom: the RFC 7009 revocation endpoint (used by logout --revoke)",
    )
    login.add_argument(
        "--issuer",
        metavar="URL",
        type=values.url,
        help="custom: the provider's issuer; without --auth-url/--token-url the endpoints are "
        "discovered from its metadata (RFC 8414, OpenID Connect Discovery); also the expected "
        "'iss' in the redirect (RFC 9207)",
    )
    login.add_argument(
        "--redirect-url",
        metavar="URL",
        type=values.url,
        help="the loopback redirect (default http://localhost:9000; another port when "
        "9000 is taken)",
    )
    app = login.add_argument_group("app-only (--provider microsoft-app | google-service-account)")
    app.add_argument(
        "--private-key-file",
        metavar="FILE",
        help="microsoft-app: the app's PEM private key (private_key_jwt); its path is remembered "
        "and the file read again at each renewal; keep it chmod 600",
    )
    app.add_argument(
        "--certificate-file",
        metavar="FILE",
        help="microsoft-app: the PEM certificate uploaded to the app registration",
    )
    app.add_argument(
        "--key-file",
        metavar="FILE",
        help="google-service-account: the service account's JSON key; its path is remembered",
    )
    app.add_argument(
        "--subject",
        metavar="USER",
        type=values.account,
        help="google-service-account: the user to act for (domain-wide delegation; "
        "default: --account)",
    )
    _smtp_flags(login, purpose="(default: the provider's; remembered)")
    _transport_flags(
        login,
        purpose="(default smtp; remembered; api asks for the API's scope, auto for both)",
    )
    login.add_argument(
        "--flow",
        choices=["browser", "device", "paste"],
        help="browser (default): the loopback redirect; device: enter a code on any device "
        "(Microsoft; not Gmail); paste: open the URL anywhere and paste back the address the "
        "browser ended on",
    )
    login.add_argument(
        "--refresh-token-file",
        metavar="FILE",
        help="import a refresh token obtained elsewhere from FILE (its first line), or from "
        "standard input with '-'; checked by one refresh before it is saved",
    )
    login.add_argument(
        "--no-browser", action="store_true", help="print the URL instead of opening a browser"
    )
    login.add_argument(
        "--timeout",
        type=values.seconds,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the browser to come back (default: 300)",
    )


def _token(sub: argparse._SubParsersAction[Parser]) -> None:
    token = _command(
        sub,
        "token",
        "print a valid access token (for msmtp, mutt, git send-email)",
        "Print a valid access token for the account on stdout and nothing else, refreshing "
        "it silently when needed. Exit code 3 means a login is needed.\n\n"
        'msmtp:  passwordeval "oauthsmtp token --account me@gmail.com"',
    )
    _account(token)
    token.add_argument(
        "--format",
        choices=["raw", "xoauth2", "oauthbearer", "json"],
        default="raw",
        help="raw token (default), a base64 SASL string, or JSON with the token's metadata",
    )


def _send(sub: argparse._SubParsersAction[Parser]) -> None:
    send = _command(
        sub,
        "send",
        "send one message through the account's SMTP server",
        "Send one message. The body comes from --body-file or standard input.\n"
        "--to, --cc, --bcc and --attach take one value each and may be repeated.\n\n"
        "example:\n"
        "  echo 'Hello' | oauthsmtp send --account me@gmail.com \\\n"
        "      --to you@example.com --to them@example.com --subject Hi",
    )
    _account(send, help_="the account to send as (also the default --from)")
    address = values.one_address
    send.add_argument(
        "--to",
        action="append",
        required=True,
        metavar="ADDR",
        type=address,
        help="a recipient; repeat for more (--to a@x --to b@y)",
    )
    send.add_argument(
        "--cc", action="append", default=[], metavar="ADDR", type=address, help="repeatable"
    )
    send.add_argument(
        "--bcc",
        action="append",
        default=[],
        metavar="ADDR",
        type=address,
        help="repeatable; in the envelope only, never in the headers",
    )
    send.add_argument("--subject", required=True, metavar="TEXT", help="the subject line")
    send.add_argument(
        "--from", dest="sender", metavar="ADDR", type=address, help="default: the account"
    )
    send.add_argument("--body-file", metavar="FILE", help="plain-text body (default: stdin)")
    send.add_argument("--html-file", metavar="FILE", help="an HTML alternative")
    send.add_argument(
        "--attach", action="append", default=[], metavar="FILE", help="a file; repeatable"
    )
    _smtp_flags(send, purpose="for this run only (default: the account's)")


def _status_logout(sub: argparse._SubParsersAction[Parser]) -> None:
    status = _command(
        sub,
        "status",
        "list accounts and their tokens' state (never a token)",
        "List recorded accounts with provider, scopes, SMTP server, token expiry and "
        "whether a refresh token is held. Never prints a token.",
    )
    _account(status, required=False, help_="only this account (default: every account)")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    logout = _command(
        sub,
        "logout",
        "forget an account's tokens (and revoke them with --revoke)",
        "Delete the account's tokens from the token store. The recorded settings and client "
        "secret stay, so `oauthsmtp login --account EMAIL` works again; --forget removes them "
        "too. With --revoke, first ask the provider to revoke the refresh token.",
    )
    _account(logout)
    logout.add_argument(
        "--revoke",
        action="store_true",
        help="first ask the provider to revoke the refresh token (RFC 7009; Gmail supports it)",
    )
    logout.add_argument(
        "--forget",
        action="store_true",
        help="also remove the account's recorded settings and client secret",
    )


def _account_group(sub: argparse._SubParsersAction[Parser]) -> None:
    group = _command(
        sub,
        "account",
        "change an account's recorded settings",
        "Change what login recorded for an account, without logging in again.",
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    actions.required = True
    set_ = actions.add_parser(
        "set",
        help="change the SMTP host, port or security, or the transport",
        description="Change the SMTP server an account sends through, or the transport. "
        "Give at least one of --smtp-host, --smtp-port, --security, --transport, --api-url. "
        "Changing --security alone moves a default port along (587 starttls, 465 ssl, "
        "25 none). A token for SMTP is refused by the APIs (and the other way round): after "
        "--transport api, log in again with --transport api (a login with --transport auto "
        "serves all three).\n\n"
        "examples:\n"
        "  oauthsmtp account set --account me@outlook.com --smtp-host smtp-mail.outlook.com\n"
        "  oauthsmtp account set --account me@contoso.com --transport api",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_debug(set_, top=False)
    _account(set_)
    _smtp_flags(set_, purpose="to record")
    _transport_flags(set_, purpose="to record")


def _tools(sub: argparse._SubParsersAction[Parser]) -> None:
    _command(
        sub,
        "providers",
        "list the provider presets",
        "List presets with endpoints and SMTP servers.",
    )
    dev = _command(
        sub,
        "dev-server",
        "run the local development provider (OAuth2 + SMTP)",
        "Start a local OAuth2 authorization server and an SMTP server that accepts "
        "XOAUTH2/OAUTHBEARER, for development and tests. Ctrl-C stops it.",
    )
    dev.add_argument(
        "--smtp-port", type=values.listen_port, default=0, metavar="PORT", help="default: free port"
    )
    dev.add_argument(
        "--http-port", type=values.listen_port, default=0, metavar="PORT", help="default: free port"
    )
    dev.add_argument("--maildir", metavar="DIR", help="where received messages are written")
    dev.add_argument(
        "--consent",
        action="store_true",
        help="show a consent page in the browser instead of approving automatically",
    )
    dev.add_argument(
        "--user",
        type=values.account,
        default="user@example.test",
        metavar="EMAIL",
        help="who approves logins (automatic approvals, the pages' default, the id_token's "
        "email; default: user@example.test)",
    )
    dev.add_argument(
        "--smtp-auth-failure",
        choices=("tenant", "mailbox", "basic-auth", "bad-token", "connections"),
        help="refuse every SMTP AUTH as Microsoft 365 does: tenant/mailbox (535 5.7.139, SMTP "
        "AUTH disabled), basic-auth (550 5.7.30), bad-token (535 5.7.3), connections "
        "(432 4.3.2); to try --transport auto",
    )
    doctor = _command(
        sub,
        "doctor",
        "check an account end to end, with the fix for each failure",
        "Check, in order, the recorded settings, the token store, the token (freshness and "
        "refresh-token health), the identity and scopes it carries, DNS, TCP, TLS and the "
        "certificate, EHLO and the AUTH mechanisms, and AUTH itself (then RSET and QUIT: no "
        "message is sent). One line per check, with the fix under each failure; checks "
        "that depend on a failed one are not run. Exit 0 when every check passes, 3 when a "
        "login is needed, 1 otherwise. Never prints a secret.",
    )
    _account(doctor, required=False, help_="the account to check (default: the only one recorded)")
    doctor.add_argument(
        "--json",
        action="store_true",
        help="a JSON list of {check, status, detail, fix} instead of text",
    )
    explain = _command(
        sub,
        "explain",
        "say what a provider's error means and how to fix it",
        "Explain an SMTP reply (535 5.7.139 ...), a Microsoft Entra code (AADSTS700025), an "
        "OAuth2 error (invalid_grant) or a TLS failure: what it means and the fix. Exit 0 "
        "when the text is known, 1 when it is not.",
    )
    explain.add_argument(
        "text", nargs="+", metavar="TEXT", help="the error text or code (quote it, or not)"
    )
    explain.add_argument(
        "--account", type=values.account, help="fill this account into the fix's commands"
    )
    demo = _command(
        sub,
        "demo",
        "walk through the whole product against an embedded dev provider",
        "Log in through the browser, send a message over STARTTLS with XOAUTH2, force a "
        "token refresh and send again, all against a local development provider.",
    )
    demo.add_argument(
        "--transport",
        choices=("smtp", "api", "auto"),
        default="smtp",
        help="smtp (default), or api: log in for Microsoft Graph and send through the "
        "provider's Graph emulation, or auto: log in for both, have the SMTP server refuse "
        "AUTH as Microsoft 365 does with SMTP AUTH off, and watch the switch to Graph",
    )


def _sendmail_relay(sub: argparse._SubParsersAction[Parser]) -> None:
    # sendmail's flags are sendmail's (-t, -oi, -fADDR, ...), not argparse's: every argument
    # goes to oauthsmtp._cli.sendmailargs as it is ("\x00" is a prefix no argument has).
    sendmail = sub.add_parser(
        "sendmail",
        help="a sendmail(8) stand-in: the message on stdin (git send-email, mutt, cron)",
        add_help=False,
        prefix_chars="\x00",
    )
    sendmail.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    relay = _command(
        sub,
        "relay",
        "an SMTP relay on loopback for programs that only speak plain SMTP",
        "Accept mail over plain SMTP (loopback only, unless --allow-remote) and send it on "
        "through the account's SMTP server with its OAuth2 token. A message is answered "
        "250 only after the upstream server accepted it (4xx when it failed for now, 5xx "
        "when it refused). SIGTERM or Ctrl-C stops it after the messages in progress.",
    )
    _account(
        relay,
        required=False,
        help_="the recorded account (default: $OAUTHSMTP_ACCOUNT, else the only one)",
    )
    relay.add_argument(
        "--listen",
        default="127.0.0.1:2525",
        metavar="HOST:PORT",
        type=values.listen_address,
        help="the address to listen on (default 127.0.0.1:2525; port 0 picks a free one)",
    )
    relay.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --listen address that is not loopback (other machines can then send)",
    )
    relay.add_argument("--user", metavar="NAME", help="require AUTH PLAIN/LOGIN as this user")
    relay.add_argument(
        "--password-file",
        metavar="FILE",
        help="the file holding --user's password (first line)",
    )
    relay.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate for STARTTLS (default with --user: a generated self-signed one)",
    )
    relay.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    relay.add_argument(
        "--max-size",
        type=values.positive_int,
        default=64 * 1024 * 1024,
        metavar="BYTES",
        help="the largest message accepted (default 64 MiB; announced with SIZE)",
    )
    relay.add_argument(
        "--max-clients",
        type=values.positive_int,
        default=100,
        metavar="N",
        help="clients served at once; more are answered 421 and try again later (default 100)",
    )


def _command(
    sub: argparse._SubParsersAction[Parser], name: str, help_: str, description: str
) -> Parser:
    parser = sub.add_parser(
        name,
        help=help_,
        description=description,
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_debug(parser, top=False)
    return parser


def build_parser() -> Parser:
    """The parser of the whole command line (used by ``main`` and by the docs' tests)."""
    parser = Parser(
        prog=PROG,
        description="Send email through OAuth2 SMTP servers (Gmail, Microsoft 365, ...) "
        "without storing a password.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_debug(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    _login(sub)
    _token(sub)
    _send(sub)
    _status_logout(sub)
    _account_group(sub)
    _sendmail_relay(sub)
    _tools(sub)
    return parser
