"""The servers under test, in their own process: oauthsmtp's development provider.

* an :class:`~oauthsmtp.devserver.AuthServer` (authorization code + PKCE, refresh tokens
  rotated on each use, as Microsoft does) that counts requests to its token endpoint;
* an :class:`~oauthsmtp.devserver.SMTPServer` (aiosmtpd) offering STARTTLS, PIPELINING and
  XOAUTH2/OAUTHBEARER, with a certificate from a throwaway CA (``make_certificates``);
* an :class:`~oauthsmtp.devserver.APIServer`: the Gmail API and Microsoft Graph sending
  endpoints (plain HTTP on loopback, keep-alive), storing into the SMTP server's messages.

They run in a separate process so that the server's CPU time never lands in the client's
``time.process_time()`` and server threads never hold the client's GIL. The benchmark
reads this process's first line (JSON: ports, client, CA file) and then sends commands:

``stats``  -> ``{"token_requests": N, "messages": N, "bytes": N, "connections": N,
"api_requests": N}``
``clear``  -> forget received messages (they are kept in memory) and reset the counts
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness import serve_commands

from oauthsmtp.devserver import APIServer, AuthServer, SMTPServer, make_certificates

ACCOUNT = "user@example.test"


def _stats(auth: AuthServer, smtp: SMTPServer, api: APIServer) -> dict[str, int]:
    messages = smtp.messages
    return {
        "token_requests": auth.token_requests,
        "messages": len(messages),
        "bytes": sum(len(m.data) for m in messages),
        "connections": smtp.connections,
        "api_requests": len(api.requests),
    }


def _clear(smtp: SMTPServer, api: APIServer) -> dict[str, bool]:
    smtp.clear()
    api.clear()
    return {"cleared": True}


def main() -> None:
    """Start both servers, announce them, serve commands until stdin closes."""
    with tempfile.TemporaryDirectory(prefix="oauthsmtp-bench-certs-") as folder:
        certificates = make_certificates(Path(folder))
        with (
            AuthServer(mode="auto", user=ACCOUNT, rotate_refresh_tokens=True) as auth,
            SMTPServer(
                auth.validate_access_token,
                certificates=certificates,
                tls_port=None,
                pipelining=True,
            ) as smtp,
        ):
            api = APIServer(auth.validate_access_token, smtp.record).start()
            client = auth.register_client()
            params = auth.parameters(client, redirect_url="http://127.0.0.1:0/callback")
            info = {
                "account": ACCOUNT,
                "smtp_host": smtp.host,
                "smtp_port": smtp.port,
                "api_port": api.port,
                "ca_file": str(certificates.ca_cert),
                "params": {
                    "client_id": params.client_id,
                    "client_secret": params.client_secret,
                    "auth_url": params.auth_url,
                    "token_url": params.token_url,
                    "scope": list(params.scopes),
                    "redirect_url": params.redirect_url,
                    "revocation_url": params.revocation_url,
                    "issuer": params.issuer,
                },
            }
            try:
                serve_commands(
                    info,
                    {"stats": lambda: _stats(auth, smtp, api), "clear": lambda: _clear(smtp, api)},
                )
            finally:
                api.stop()


if __name__ == "__main__":
    main()
