"""What a provider's error means and how to fix it: one table, used everywhere.

:func:`explain` takes any text a user may hold (an SMTP reply such as
``535 5.7.139 Authentication unsuccessful...``, an Entra ID code such as
``AADSTS700025``, an OAuth2 error such as ``invalid_grant``, a TLS failure) and
returns what it means and the fix, or None when the text means nothing known.

The knowledge is data (:data:`TABLE`), not a chain of ``if``: each
:class:`Explanation` names the patterns that identify it, in order from the most
specific to the most general, so a fix is written once and read by the
library's errors, ``oauthsmtp explain``, and docs/troubleshooting.md (a test
checks that the page lists every entry). Pure: no I/O, standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["TABLE", "Explanation", "by_key", "explain", "lookup", "markdown"]

_MAX_TEXT = 64 * 1024
"""Only the first 64 KiB of a text is examined (a reply or an error message is far shorter)."""


@dataclass(frozen=True)
class Explanation:
    """One known failure: how to recognise it, what it means, and the fix.

    ``patterns`` are regular expressions matched case-insensitively anywhere in
    the text; the entry applies when any of them matches. ``retry`` says whether
    refreshing the token and trying again can help (False: a configuration
    problem that only a person can fix). ``fix`` may contain ``{account}``,
    replaced by the account when one is known.
    """

    key: str
    """A stable identifier, e.g. ``smtp-5.7.139-tenant`` (also the docs' anchor)."""
    title: str
    """What happened, in one line."""
    cause: str
    """Why it happens."""
    fix: str
    """What to do."""
    patterns: tuple[str, ...]
    retry: bool = False
    kind: str = field(default="smtp")
    """``account``, ``smtp``, ``entra`` (Microsoft Entra ID), ``google``, ``oauth``, ``net`` or
    ``tls``."""

    def render(self, *, account: str | None = None) -> str:
        """The explanation as a few lines of text (what, why, fix)."""
        fix = self.fix.replace("{account}", account or "<mailbox>")
        return f"{self.title}\nWhy: {self.cause}\nFix: {fix}"

    def matches(self, text: str) -> bool:
        return any(re.search(p, text, re.IGNORECASE) for p in self.patterns)


_LOGIN = "oauthsmtp login --account {account}"

_GRAPH = (
    "send through Microsoft Graph instead "
    "(oauthsmtp login --account {account} --transport api; docs/api.md)"
)

_GRAPH_OR_AUTO = (
    "send through Microsoft Graph instead: oauthsmtp login --account {account} --transport api "
    "(or --transport auto: SMTP first, Graph only when SMTP is refused like this; docs/api.md)"
)

TABLE: tuple[Explanation, ...] = (
    # -- the account, its saved login and its token (what oauthsmtp doctor checks first) ------
    Explanation(
        key="account-not-recorded",
        kind="account",
        title="No account of that name is recorded on this machine.",
        cause="nobody has logged in with this account here (or under this OAUTHSMTP_HOME).",
        fix="log in once: oauthsmtp login --account {account} --provider gmail|microsoft|custom "
        "(see oauthsmtp login --help); then oauthsmtp doctor --account {account}.",
        patterns=(r"no account .{1,400} is recorded", r"no accounts? (is|are) recorded"),
    ),
    Explanation(
        key="token-store-unusable",
        kind="account",
        title="The token store cannot be used.",
        cause="no secure OS keyring is available (a headless machine, no Secret Service "
        "session), or OAUTHSMTP_STORE names a store that does not work here.",
        fix="set OAUTHSMTP_STORE=file to keep tokens in 0600 files under OAUTHSMTP_HOME (or "
        "start a keyring session), and use the same OAUTHSMTP_STORE for the login and every "
        "later command.",
        patterns=(r"the token store cannot be used",),
    ),
    Explanation(
        key="token-missing",
        kind="account",
        title="No usable login is saved for this account.",
        cause="the account never logged in with this token store, logged out, or the saved "
        "token cannot be read.",
        fix=f"log in again: {_LOGIN} (the settings are recorded, so no other option is "
        "needed); check that OAUTHSMTP_STORE is the one used at login.",
        patterns=(r"no saved login", r"the saved token cannot be read"),
    ),
    Explanation(
        key="token-no-refresh",
        kind="account",
        title="The access token expired and no refresh token is held.",
        cause="the provider issued no refresh token: Google gives one only with "
        "access_type=offline and prompt=consent, Microsoft only with the offline_access scope.",
        fix=f"log in again with the provider preset, which asks for both: {_LOGIN}.",
        patterns=(r"no refresh token is held",),
    ),
    Explanation(
        key="identity-mismatch",
        kind="account",
        title="The token belongs to another account than the one that sends.",
        cause="the browser login picked another account (a browser signed in to several "
        "accounts offers them all), so the server will refuse AUTH as this account.",
        fix=f"log in again and choose {{account}} on the provider's page: {_LOGIN}; or send as "
        "the account that logged in.",
        patterns=(r"token is for .{1,400}, not ", r"\baccountmismatch\b"),
    ),
    Explanation(
        key="scope-graph-for-smtp",
        kind="account",
        title="The token is for Microsoft Graph, not for SMTP.",
        cause="a Graph scope (https://graph.microsoft.com/Mail.Send) was granted; Exchange "
        "Online's SMTP server accepts only tokens for https://outlook.office.com/SMTP.Send.",
        fix=f"log in again asking for https://outlook.office.com/SMTP.Send offline_access "
        f"({_LOGIN} --provider microsoft); or {_GRAPH}.",
        patterns=(r"microsoft graph scope, not smtp\.send",),
    ),
    Explanation(
        key="api-token-missing",
        kind="account",
        title="The login gives no token for the HTTP API that transport auto switches to.",
        cause="the login did not consent to the API's scope (Microsoft Graph's Mail.Send), or "
        "the app registration lacks that permission: the refresh that redeems the API's token "
        "is refused (invalid_scope, AADSTS65001).",
        fix="add the API permission to the app (Microsoft Graph > Delegated > Mail.Send; "
        "docs/api.md) and log in again asking for both: oauthsmtp login --account {account} "
        "--transport auto.",
        patterns=(r"no token for .{1,80} from this login",),
    ),
    Explanation(
        key="scope-missing",
        kind="account",
        title="The token lacks the scope needed to send mail over SMTP.",
        cause="the login asked for other scopes (gmail.send is for the Gmail API, not SMTP), "
        "or the consent screen's mail access was unticked.",
        fix=f"log in again with the provider preset's scope and allow all the access asked "
        f"for: {_LOGIN}.",
        patterns=(r"the mail scope .{1,300} was not granted",),
    ),
    # -- Microsoft 365 / Exchange Online SMTP -----------------------------------------------
    Explanation(
        key="smtp-5.7.139-tenant",
        title="535 5.7.139: SMTP AUTH is disabled for the whole Microsoft 365 tenant.",
        cause="the tenant turned SMTP client authentication off (the default for new tenants); "
        "no token can change that.",
        fix="an Exchange admin runs Set-TransportConfig -SmtpClientAuthenticationDisabled $false "
        "(or enables it for this mailbox only: Set-CASMailbox -Identity {account} "
        f"-SmtpClientAuthenticationDisabled $false); or {_GRAPH_OR_AUTO}; see "
        "https://aka.ms/smtp_auth_disabled. Refreshing or retrying will not help.",
        patterns=(r"5\.7\.139.*\btenant\b", r"smtpclientauthentication is disabled for the tenant"),
    ),
    Explanation(
        key="smtp-5.7.139-mailbox",
        title="535 5.7.139: SMTP AUTH is disabled for this mailbox.",
        cause="the mailbox has SMTP client authentication turned off; no token can change that.",
        fix="an Exchange admin runs Set-CASMailbox -Identity {account} "
        "-SmtpClientAuthenticationDisabled $false (the change can take an hour to apply); or "
        f"{_GRAPH_OR_AUTO}; see https://aka.ms/smtp_auth_disabled. Refreshing or retrying will "
        "not help.",
        patterns=(
            r"5\.7\.139.*\bmailbox\b",
            r"smtpclientauthentication is disabled for the mailbox",
        ),
    ),
    Explanation(
        key="smtp-5.7.139",
        title="535 5.7.139: Microsoft 365 refused SMTP authentication for this mailbox or tenant.",
        cause="SMTP client authentication is off for the mailbox or the tenant, or security "
        "defaults / a Conditional Access policy block it.",
        fix="an Exchange admin runs Set-CASMailbox -Identity {account} "
        "-SmtpClientAuthenticationDisabled $false (or Set-TransportConfig for the tenant) and "
        f"checks that security defaults do not block SMTP AUTH; or {_GRAPH_OR_AUTO}; see "
        "https://aka.ms/smtp_auth_disabled.",
        patterns=(r"\b5\.7\.139\b", r"smtpclientauthentication is disabled"),
    ),
    Explanation(
        key="smtp-5.7.30",
        title="550 5.7.30: Microsoft 365 no longer accepts a password for SMTP (basic auth).",
        cause="basic authentication for client submission is off; only OAuth2 (XOAUTH2) works.",
        fix=f"log in with OAuth2 and send with the token: {_LOGIN} --provider microsoft; if "
        f"SMTP AUTH is refused for the token as well, {_GRAPH_OR_AUTO}.",
        patterns=(r"\b5\.7\.30\b", r"basic authentication is not supported"),
    ),
    Explanation(
        key="smtp-5.7.3",
        title="535 5.7.3: Microsoft 365 refused the token.",
        cause="the token is for another audience (a Graph scope instead of "
        "https://outlook.office.com/SMTP.Send), or for another account than the SMTP user "
        "name, or the mailbox cannot use SMTP AUTH (no Exchange licence, SMTP AUTH off); for "
        "app-only tokens the Exchange service principal or its mailbox permission is missing.",
        fix="log in again asking for https://outlook.office.com/SMTP.Send offline_access "
        f"only ({_LOGIN} --provider microsoft), and send as the account that logged in; for "
        "app-only, register the service principal (New-ServicePrincipal) and grant it the "
        "mailbox (Add-MailboxPermission -AccessRights FullAccess).",
        patterns=(r"\b5\.7\.3\b",),
        retry=True,
    ),
    Explanation(
        key="smtp-5.7.57",
        title="530 5.7.57: Microsoft 365 will not accept mail before authentication.",
        cause="the session did not authenticate (AUTH was skipped or failed).",
        fix="send through an authenticated session (oauthsmtp always authenticates when it has "
        "a token): check the account's security setting is starttls on port 587.",
        patterns=(r"\b5\.7\.57\b", r"client not authenticated to send mail"),
    ),
    Explanation(
        key="smtp-5.7.60",
        title="550 5.7.60: this mailbox may not send as that sender.",
        cause="the From address is not the mailbox that logged in, and the mailbox has no "
        "Send As permission for it.",
        fix="send From the account that logged in ({account}), or have an admin grant Send As "
        "(Add-RecipientPermission -AccessRights SendAs).",
        patterns=(r"\b5\.7\.60\b", r"does not have permissions to send as this sender"),
    ),
    Explanation(
        key="smtp-4.3.2",
        title="432 4.3.2: too many concurrent connections for this mailbox.",
        cause="Microsoft 365 allows 3 concurrent SMTP connections per mailbox; other "
        "programs or workers sending as the same mailbox count too.",
        fix="open fewer connections (SMTPSession(..., connections=1)); oauthsmtp's pool already "
        "shrinks when it sees this reply. Share one limit across workers: "
        "SMTPSession(..., limits=oauthsmtp.providers.MICROSOFT_365_LIMITS, "
        "limits_store=a RedisStore) backs off and retries, and keeps every worker within 3.",
        patterns=(r"\b4\.3\.2\b", r"concurrent connections limit"),
        retry=True,
    ),
    Explanation(
        key="smtp-5.2.0-quota",
        title="554 5.2.0: the mailbox reached its sending quota.",
        cause="Microsoft 365 allows 10,000 recipients per day per mailbox (and 30 messages a "
        "minute); the excess is refused.",
        fix="wait until the rolling 24-hour window frees up, spread sending over mailboxes, or "
        "use a bulk-mail service for large volumes; SendLimits (providers.MICROSOFT_365_LIMITS) "
        "counts recipients first and defers what would pass the cap.",
        patterns=(r"submissionquotaexceeded", r"\b5\.2\.0\b.*quota"),
    ),
    # -- Gmail SMTP ------------------------------------------------------------------------
    Explanation(
        key="smtp-5.7.8",
        title="535 5.7.8: Gmail refused the credentials.",
        cause="the access token expired or was revoked, was issued for another Google account "
        "than the SMTP user name, or lacks the https://mail.google.com/ scope.",
        fix=f"oauthsmtp refreshes once by itself; if it persists, log in again ({_LOGIN}) with "
        "the same Google account you send as, and allow Gmail access on the consent screen.",
        patterns=(r"\b5\.7\.8\b", r"username and password not accepted"),
        retry=True,
    ),
    Explanation(
        key="smtp-5.7.9",
        title="534 5.7.9: Gmail wants an application-specific password.",
        cause="a password login was attempted on an account with 2-Step Verification.",
        fix=f"use OAuth2 instead of a password: {_LOGIN} --provider gmail.",
        patterns=(r"\b5\.7\.9\b", r"application-specific password required"),
    ),
    Explanation(
        key="smtp-5.7.14",
        title="534 5.7.14: Google wants a browser sign-in first.",
        cause="Google blocked the sign-in as unusual, or the account needs attention.",
        fix=f"sign in to the account in a browser, then log in again: {_LOGIN}.",
        patterns=(r"\b5\.7\.14\b", r"log in via your web browser"),
    ),
    Explanation(
        key="smtp-5.4.5",
        title="550 5.4.5: the Gmail daily sending limit is reached.",
        cause="Gmail allows about 500 messages a day; Google Workspace 2,000 messages and "
        "10,000 recipients a day, 100 recipients per message.",
        fix="wait up to 24 hours, or split sending across accounts; Workspace admins can see "
        "the limits in the Admin console. SendLimits (providers.GMAIL_LIMITS, "
        "GOOGLE_WORKSPACE_LIMITS) counts first and defers what would pass the cap.",
        patterns=(r"\b5\.4\.5\b", r"daily user sending limit"),
    ),
    Explanation(
        key="smtp-4.7.0-rate",
        title="421/454 4.7.0: the server asks to slow down.",
        cause="too many connections, logins or messages in a short time.",
        fix="wait a few minutes and send more slowly (fewer connections, smaller batches).",
        patterns=(r"\b4\.7\.0\b.*(try again later|too many|rate)", r"\b4\.7\.28\b"),
        retry=True,
    ),
    # -- any SMTP server -------------------------------------------------------------------
    Explanation(
        key="smtp-5.7.0-starttls",
        title="530 5.7.0: the server wants STARTTLS before anything else.",
        cause="the session did not start TLS.",
        fix="use security='starttls' on port 587 (or security='ssl' on port 465).",
        patterns=(r"must issue a starttls command first",),
    ),
    Explanation(
        key="smtp-5.3.4",
        title="552 5.3.4: the message is larger than the server accepts.",
        cause="the message (attachments grow by a third once encoded) exceeds the server's "
        "size limit (Gmail 35 MB, Microsoft 365 about 35 MB by default).",
        fix="send smaller attachments, or a link to the file instead.",
        patterns=(r"\b5\.3\.4\b", r"message size exceeds"),
    ),
    Explanation(
        key="smtp-starttls-missing",
        title="The server does not offer STARTTLS (or refused it), so nothing was sent.",
        cause="the port is not a submission port with STARTTLS, or something on the network "
        "strips STARTTLS from the server's answer (oauthsmtp never continues without TLS).",
        fix="use port 587 with security starttls or 465 with ssl (oauthsmtp account set "
        "--account {account} --smtp-port ... --security ...); if the server does offer "
        "STARTTLS elsewhere, do not send from this network.",
        patterns=(r"does not offer starttls", r"refused starttls"),
    ),
    Explanation(
        key="smtp-no-oauth-mechanism",
        title="The server offers no OAuth2 mechanism (XOAUTH2 or OAUTHBEARER) after TLS.",
        cause="the host is not the provider's submission server (a relay, a local MTA, an "
        "old server), or SMTP AUTH is switched off on it.",
        fix="send to the provider's submission server (oauthsmtp providers lists them): "
        "oauthsmtp account set --account {account} --smtp-host ... --smtp-port 587 "
        "--security starttls.",
        patterns=(r"no mechanism for an oauth2 token", r"offers no oauth2 mechanism"),
    ),
    # -- Microsoft Entra ID (AADSTS codes) --------------------------------------------------
    Explanation(
        key="aadsts700025",
        kind="entra",
        title="AADSTS700025: this Microsoft app is a public client, so it must not send a secret.",
        cause="the app registration is a public client (Mobile and desktop applications), and "
        "a client secret was sent.",
        fix="log in without the client secret (drop --client-secret / client_secret).",
        patterns=(r"AADSTS700025\b",),
    ),
    Explanation(
        key="aadsts7000218",
        kind="entra",
        title="AADSTS7000218: this Microsoft app expects a client secret.",
        cause="the app registration is a confidential client (the Web platform), and no "
        "secret was sent.",
        fix="pass the secret (--client-secret-file), or add a 'Mobile and desktop "
        "applications' platform with redirect http://localhost and turn on 'Allow public "
        "client flows', then log in without one.",
        patterns=(r"AADSTS7000218\b",),
    ),
    Explanation(
        key="aadsts7000215",
        kind="entra",
        title="AADSTS7000215: the client secret is wrong.",
        cause="the secret's ID was used instead of its value, or the value was mistyped.",
        fix="copy the secret's Value (shown once, when it is created) from Certificates & "
        "secrets, or create a new one.",
        patterns=(r"AADSTS7000215\b",),
    ),
    Explanation(
        key="aadsts7000222",
        kind="entra",
        title="AADSTS7000222: the client secret has expired.",
        cause="client secrets have an end date.",
        fix="create a new secret under Certificates & secrets and log in with it.",
        patterns=(r"AADSTS7000222\b",),
    ),
    Explanation(
        key="aadsts700027",
        kind="entra",
        title="AADSTS700027: the app's signed assertion was refused (certificate credentials).",
        cause="the certificate whose thumbprint the assertion names is not uploaded to the app "
        "registration (or has expired), or the key that signed it is not that certificate's.",
        fix="upload the certificate (the .crt, never the key) under Certificates & secrets, "
        "and give oauthsmtp the key made with it (docs/app-only.md).",
        patterns=(r"AADSTS700027\b",),
    ),
    Explanation(
        key="aadsts1002012",
        kind="entra",
        title="AADSTS1002012: an app-only token needs a /.default scope.",
        cause="the client credentials grant asks for the app's granted permissions as a "
        "whole, not for single scopes such as SMTP.Send.",
        fix="use the scope https://outlook.office365.com/.default (the default of "
        "providers.microsoft_app and --provider microsoft-app).",
        patterns=(r"AADSTS1002012\b",),
    ),
    Explanation(
        key="aadsts50011",
        kind="entra",
        title="AADSTS50011: the redirect URL is not registered for this app.",
        cause="the redirect_uri sent does not match any registered for the app.",
        fix="add http://localhost under 'Mobile and desktop applications' (Entra then accepts "
        "any port), or register the exact URL, port included, under 'Web'.",
        patterns=(r"AADSTS50011\b",),
    ),
    Explanation(
        key="aadsts65001",
        kind="entra",
        title="AADSTS65001: nobody has consented to the app's permissions.",
        cause="the user (or, where users may not consent, an administrator) has not granted "
        "SMTP.Send to this app.",
        fix="log in again and accept the consent screen, or have an admin grant consent for the "
        "organisation under API permissions.",
        patterns=(r"AADSTS65001\b",),
    ),
    Explanation(
        key="aadsts50020",
        kind="entra",
        title="AADSTS50020: this account does not belong to the app's tenant.",
        cause="the app accepts only accounts of its own tenant and the account is a guest, a "
        "personal Microsoft account, or from another organisation.",
        fix="log in with --tenant set to the account's own tenant (or organizations / "
        "consumers), or make the app registration multi-tenant.",
        patterns=(r"AADSTS50020\b",),
    ),
    Explanation(
        key="aadsts50194",
        kind="entra",
        title="AADSTS50194: this app is single-tenant, so /common cannot be used.",
        cause="the app registration accepts only its own tenant.",
        fix="log in with --tenant set to the tenant ID or domain (contoso.onmicrosoft.com).",
        patterns=(r"AADSTS50194\b",),
    ),
    Explanation(
        key="aadsts53003",
        kind="entra",
        title="AADSTS53003: a Conditional Access policy blocked the sign-in.",
        cause="the organisation's policies forbid this sign-in (device, location, or app).",
        fix="ask the tenant's administrator to allow the app or the device; the sign-in logs "
        "show which policy applied.",
        patterns=(r"AADSTS53003\b",),
    ),
    Explanation(
        key="aadsts50076",
        kind="entra",
        title="AADSTS50076: multi-factor authentication is required.",
        cause="a policy asks for MFA, which only an interactive login can satisfy.",
        fix=f"log in again in a browser: {_LOGIN}.",
        patterns=(r"AADSTS50076\b", r"AADSTS50079\b"),
    ),
    Explanation(
        key="aadsts90009",
        kind="entra",
        title="AADSTS90009: the app asked for a token for itself.",
        cause="the scope names the app's own client id instead of the resource to use.",
        fix="ask for https://outlook.office.com/SMTP.Send offline_access (SMTP) or "
        "https://graph.microsoft.com/Mail.Send (Graph).",
        patterns=(r"AADSTS90009\b",),
    ),
    Explanation(
        key="aadsts700016",
        kind="entra",
        title="AADSTS700016: no app with this client id exists in the tenant.",
        cause="the client id is mistyped, the app was deleted, or it is single-tenant and the "
        "login went to another tenant.",
        fix="copy the Application (client) ID from the app registration's overview, and use "
        "the app's tenant (--tenant) if it is single-tenant.",
        patterns=(r"AADSTS700016\b",),
    ),
    Explanation(
        key="aadsts70011",
        kind="entra",
        title="AADSTS70011: the scope is not valid.",
        cause="an unknown scope, or Outlook and Graph scopes mixed in one request.",
        fix="ask for https://outlook.office.com/SMTP.Send offline_access only (SMTP).",
        patterns=(r"AADSTS70011\b",),
    ),
    Explanation(
        key="aadsts700082",
        kind="entra",
        title="AADSTS700082: the refresh token expired after 90 days unused.",
        cause="Microsoft refresh tokens lapse after about 90 days without use.",
        fix=f"log in again: {_LOGIN}; send (or run oauthsmtp token) at least every few weeks "
        "to keep it alive.",
        patterns=(r"AADSTS700082\b",),
    ),
    Explanation(
        key="aadsts50173",
        kind="entra",
        title="AADSTS50173: the login was revoked (for example by a password change).",
        cause="a password change or an administrator revoked the sessions.",
        fix=f"log in again: {_LOGIN}.",
        patterns=(r"AADSTS50173\b", r"AADSTS70043\b", r"AADSTS700084\b"),
    ),
    # -- Google OAuth ----------------------------------------------------------------------
    Explanation(
        key="google-device-scope",
        kind="google",
        title="Google does not allow Gmail scopes in the device flow.",
        cause="Google's device flow accepts a short list of scopes, and "
        "https://mail.google.com/ is not on it.",
        fix="use the browser login (with ssh -L to forward the port) or the paste-back login "
        "on a machine without a browser.",
        patterns=(r"invalid device flow scope",),
    ),
    Explanation(
        key="google-admin-policy",
        kind="google",
        title="admin_policy_enforced: a Google Workspace admin blocks this app.",
        cause="the Workspace's API controls do not trust this OAuth client for Gmail scopes.",
        fix="a Workspace admin marks the app as trusted in the Admin console (Security > "
        "Access and data control > API controls > Manage third-party app access).",
        patterns=(r"\badmin_policy_enforced\b",),
    ),
    Explanation(
        key="google-org-internal",
        kind="google",
        title="org_internal: this Google app is for one organisation's users only.",
        cause="the OAuth consent screen is Internal, and the account is outside that Workspace.",
        fix="log in with an account of that organisation, or make the app External.",
        patterns=(r"\borg_internal\b",),
    ),
    Explanation(
        key="google-redirect-mismatch",
        kind="google",
        title="redirect_uri_mismatch: the redirect URL is not registered for this Google client.",
        cause="a Web application client accepts only its exact registered URLs.",
        fix="create a Desktop app client (it accepts any loopback port), or register "
        "http://localhost:9000 exactly under Authorized redirect URIs.",
        patterns=(r"\bredirect_uri_mismatch\b",),
    ),
    Explanation(
        key="google-disabled-client",
        kind="google",
        title="The Google OAuth client was disabled or deleted.",
        cause="the client id no longer works in its Cloud project.",
        fix="create a new OAuth client in the Google Cloud console and log in with it.",
        patterns=(r"\bdisabled_client\b", r"\bdeleted_client\b"),
    ),
    # -- any OAuth2 server (RFC 6749 §5.2) ----------------------------------------------------
    Explanation(
        key="oauth-invalid-grant",
        kind="oauth",
        title="invalid_grant: the saved login (refresh token or code) no longer works.",
        cause="the user revoked the app's access; a Google app in 'Testing' status issues "
        "refresh tokens that die after 7 days; Google keeps at most 100 live refresh tokens "
        "per account and client, and drops any unused for 6 months; Microsoft's lapse after "
        "about 90 days unused; a password change ends them.",
        fix=f"log in again: {_LOGIN}. For a Google app in Testing, publish it (OAuth consent "
        "screen > Publish app) so its refresh tokens stop expiring after 7 days.",
        patterns=(r"\binvalid_grant\b", r"AADSTS70000\b", r"AADSTS70008\b"),
    ),
    Explanation(
        key="oauth-invalid-client",
        kind="oauth",
        title="invalid_client: the provider does not accept this client id or secret.",
        cause="a mistyped client id or secret, an expired secret, or a secret sent to a public "
        "client (or none to a confidential one).",
        fix="check the client id and secret in the provider's console, and whether this client "
        "needs a secret at all.",
        patterns=(r"\binvalid_client\b",),
    ),
    Explanation(
        key="oauth-unauthorized-client",
        kind="oauth",
        title="unauthorized_client: this client may not use this kind of login.",
        cause="the app registration does not allow the grant (for Microsoft's device flow, "
        "'Allow public client flows' is off).",
        fix="enable the flow in the app registration (Entra: Authentication > Allow public "
        "client flows), or use the browser login.",
        patterns=(r"\bunauthorized_client\b",),
    ),
    Explanation(
        key="oauth-invalid-scope",
        kind="oauth",
        title="invalid_scope: the provider does not know or allow a requested scope.",
        cause="a mistyped scope, scopes of two APIs mixed in one request, or a scope the "
        "client is not configured for.",
        fix="use the provider preset's scope (oauthsmtp providers lists them).",
        patterns=(r"\binvalid_scope\b",),
    ),
    Explanation(
        key="oauth-access-denied",
        kind="oauth",
        title="access_denied: the login was declined.",
        cause="the user (or a policy) refused the consent screen.",
        fix=f"log in again and allow the requested access: {_LOGIN}.",
        patterns=(r"\baccess_denied\b",),
    ),
    Explanation(
        key="oauth-expired-token",
        kind="oauth",
        title="expired_token: the device code expired before the login finished.",
        cause="the code shown by the device login is valid for a limited time (often 15 min).",
        fix="start the login again and finish it in time.",
        patterns=(r"\bexpired_token\b",),
    ),
    Explanation(
        key="oauth-unavailable",
        kind="oauth",
        title="The provider's token service is unavailable for now.",
        cause="server_error or temporarily_unavailable: a problem on the provider's side.",
        fix="try again in a few minutes; oauthsmtp already retries a few times with backoff.",
        patterns=(r"\bserver_error\b", r"\btemporarily_unavailable\b"),
        retry=True,
    ),
    # -- TLS ----------------------------------------------------------------------------------
    Explanation(
        key="tls-wrong-version",
        kind="tls",
        title="TLS and plain text crossed: the port and the security setting do not match.",
        cause="security='ssl' (implicit TLS) against a port that starts in plain text (587, "
        "25), or STARTTLS against an implicit-TLS port (465).",
        fix="use security='starttls' with port 587, or security='ssl' with port 465 "
        "(oauthsmtp account set --account {account} --security ... --smtp-port ...).",
        patterns=(
            r"wrong[_ ]version[_ ]number",
            r"implicit[- ]tls port",
            r"expects implicit tls",
            r"answered in plain text, not tls",
            r"unknown protocol",
        ),
    ),
    Explanation(
        key="tls-untrusted",
        kind="tls",
        title="The server's certificate is not trusted.",
        cause="the certificate is self-signed, issued by a private CA, or for another host "
        "name; or a proxy intercepts TLS.",
        fix="check the host name; to trust a private CA, point SSL_CERT_FILE at a PEM file "
        "holding it (Python: ssl_context=). Never turn verification off.",
        patterns=(
            r"certificate[_ ]verify[_ ]failed",
            r"certificate verify failed",
            r"certificate of .{1,300} does not verify",
        ),
    ),
    Explanation(
        key="tls-failed",
        kind="tls",
        title="The TLS handshake failed.",
        cause="the port and the security setting do not match, the server closed the "
        "handshake, or the two sides share no TLS version.",
        fix="use security starttls with port 587 or ssl with port 465 (oauthsmtp account set "
        "--account {account} ...); run again with --debug for the TLS error.",
        patterns=(r"tls handshake with .{1,300} (failed|timed out)", r"during the tls handshake"),
    ),
    # -- the network --------------------------------------------------------------------------
    Explanation(
        key="dns-unresolved",
        kind="net",
        title="The SMTP server's name does not resolve.",
        cause="a mistyped host name, or this machine's DNS does not answer.",
        fix="check the SMTP host (oauthsmtp providers lists the presets' servers; change it "
        "with oauthsmtp account set --account {account} --smtp-host ...) and this machine's "
        "DNS settings.",
        patterns=(
            r"does not resolve",
            r"name or service not known",
            r"temporary failure in name resolution",
            r"nodename nor servname",
            r"getaddrinfo failed",
        ),
    ),
    Explanation(
        key="tcp-unreachable",
        kind="net",
        title="The SMTP server cannot be reached on that port.",
        cause="the port is wrong, or a firewall (many home and cloud networks block outgoing "
        "SMTP ports) drops or refuses the connection.",
        fix="check the port (587 with starttls, 465 with ssl: oauthsmtp account set --account "
        "{account} --smtp-port ...) and that this network lets outgoing connections to it "
        "through.",
        patterns=(
            r"connection refused",
            r"no route to host",
            r"network is unreachable",
            r"timed out connecting",
            r"cannot connect to",
        ),
    ),
    # -- general fallbacks: last, so that every specific entry above wins -------------------
    Explanation(
        key="token-endpoint-failed",
        kind="account",
        title="The token endpoint could not renew the access token.",
        cause="the provider's token endpoint answered an error that oauthsmtp has no specific "
        "advice for, or could not be reached.",
        fix="check the network and the recorded token URL (oauthsmtp status --account "
        "{account}); run the command again with --debug to see the exchange (secrets masked), "
        "and oauthsmtp explain the error text.",
        patterns=(r"the token endpoint (answered|did not answer|refused|could not)",),
        retry=True,
    ),
    Explanation(
        key="smtp-refused-session",
        title="The server turned the connection away before authentication.",
        cause="it refused the session or EHLO: it is busy, it limits connections from this "
        "address, or it is not a submission server.",
        fix="try again in a few minutes; check the host and port (587 starttls, 465 ssl) "
        "with oauthsmtp status --account {account}.",
        patterns=(r"refused the session", r"refused ehlo"),
        retry=True,
    ),
    Explanation(
        key="smtp-auth-refused",
        title="The server refused authentication with a reply oauthsmtp has no advice for.",
        cause="the token, the user name or the mailbox's permission to use SMTP.",
        fix=f"check that the account sends as itself and that SMTP AUTH is allowed for it; "
        f"log in again ({_LOGIN}); oauthsmtp explain the server's reply.",
        patterns=(r"refused auth \S+: \d{3}",),
        retry=True,
    ),
)


_AADSTS = re.compile(r"\bAADSTS(\d{4,8})\b")


def _clean(text: str) -> str:
    text = text[:_MAX_TEXT]
    # Folded replies and JSON bodies: one line of plain text to search.
    return " ".join(text.split())


def lookup(text: str, *, table: Sequence[Explanation] = TABLE) -> Explanation | None:
    """The first entry of ``table`` whose patterns match ``text``, or None."""
    if not isinstance(text, str):
        raise TypeError(f"explain() takes a str, not {type(text).__name__}")
    cleaned = _clean(text)
    if not cleaned:
        return None
    for entry in table:
        if entry.matches(cleaned):
            return entry
    return None


def by_key(key: str) -> Explanation:
    """The entry called ``key`` (``oauthsmtp doctor``'s fix for a failure with no text).

    Raises:
        KeyError: no entry has that key.
    """
    for entry in TABLE:
        if entry.key == key:
            return entry
    raise KeyError(key)


def explain(text: str, *, account: str | None = None) -> str | None:
    """What an SMTP reply, Entra ID (AADSTS) code, OAuth2 error or TLS failure means.

    Returns a few lines (what happened, why, and the fix) or None when the text
    holds nothing known. ``account`` fills the fix's commands in.

    >>> print(explain("AADSTS700025").splitlines()[0])
    AADSTS700025: this Microsoft app is a public client, so it must not send a secret.
    """
    entry = lookup(text)
    if entry is None:
        code = _AADSTS.search(_clean(text))
        if code is not None:
            return (
                f"AADSTS{code.group(1)}: a Microsoft Entra ID sign-in error that oauthsmtp has "
                "no specific advice for.\nFix: look the code up at "
                f"https://login.microsoftonline.com/error?code={code.group(1)}"
            )
        return None
    return entry.render(account=account)


_KIND_TITLES = (
    ("account", "The account, its saved login and its token"),
    ("smtp", "SMTP replies"),
    ("entra", "Microsoft Entra ID sign-in codes"),
    ("google", "Google sign-in errors"),
    ("oauth", "OAuth2 token endpoint errors (any provider)"),
    ("tls", "TLS"),
    ("net", "The network"),
)


def markdown(table: Sequence[Explanation] = TABLE) -> str:
    """The table as Markdown, for docs/troubleshooting.md (a test keeps the two equal)."""
    parts: list[str] = []
    for kind, heading in _KIND_TITLES:
        entries = [e for e in table if e.kind == kind]
        if not entries:
            continue
        parts.append(f"### {heading}\n")
        for entry in entries:
            again = "a refresh and one retry may help" if entry.retry else "retrying will not help"
            parts.append(
                f'<a id="{entry.key}"></a>**{entry.title}**  \n'
                f"Why: {entry.cause}  \n"
                f"Fix: {entry.fix.replace('{account}', '&lt;mailbox&gt;')} ({again})\n"
            )
    return "\n".join(parts)
