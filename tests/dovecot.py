"""A real Dovecot (IMAP + POP3) on loopback whose oauth2 passdb asks the dev provider.

:class:`Dovecot` writes a configuration into a fresh temporary folder (``base_dir``,
``state_dir``, the log, the mail homes), starts ``dovecot -F -c CONF`` in its own process
group on free loopback ports, waits (bounded) until every listener greets, and on
:meth:`Dovecot.stop` ends the whole process group: SIGTERM, a bounded wait, then SIGKILL.

Tokens are checked the way a real deployment checks them: Dovecot's ``oauth2`` passdb POSTs
each token to the authorization server's RFC 7662 introspection endpoint, authenticated as
a confidential client, and accepts it when ``active`` is true and ``username`` is the SASL
user (docs: "Open Authentication v2.0 database", Dovecot 2.3).

It runs as whoever runs the tests. As root (CI) the login processes run as Debian's
``dovenull`` and the mail processes as ``dovecot`` (Dovecot refuses root for both); as
another user, every process runs as that user, without chroot.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from components import require_program

from oauthsmtp.devserver import CertificateSet

__all__ = ["Dovecot"]

PACKAGES = "dovecot-imapd dovecot-pop3d"
_START_WITHIN = 20.0
_STOP_WITHIN = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Dovecot:
    """A running Dovecot for one test module (see the module docstring).

    Args:
        certificates: the server certificate and key (the client trusts their CA).
        introspection_url: the authorization server's introspection endpoint, with the
            introspecting client's id and secret as ``http://id:secret@host:port/path``.
    """

    def __init__(self, certificates: CertificateSet, introspection_url: str) -> None:
        self.program = require_program("dovecot", PACKAGES)
        self.certificates = certificates
        self.introspection_url = introspection_url
        self.ports = {name: _free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
        self.folder = Path(tempfile.mkdtemp(prefix="oauthsmtp-dovecot-"))
        self._proc: subprocess.Popen[bytes] | None = None

    # -- configuration

    def _users(self) -> tuple[str, int, int]:
        """The settings that name users, and the uid/gid of the mail processes."""
        if os.getuid() == 0:
            mail = pwd.getpwnam("dovecot")  # Debian's dovecot-core creates it
            return "", mail.pw_uid, mail.pw_gid
        me = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        settings = (
            f"default_internal_user = {me}\n"
            f"default_internal_group = {group}\n"
            f"default_login_user = {me}\n"
        )
        return settings, os.getuid(), os.getgid()

    def write_config(self) -> Path:
        users, mail_uid, mail_gid = self._users()
        # Dovecot's unprivileged processes must reach the certificate, the sockets and
        # the mail homes inside this folder.
        self.folder.chmod(0o755)
        home = self.folder / "home"
        home.mkdir()
        os.chown(home, mail_uid, mail_gid)
        certs = self.folder / "certs"
        certs.mkdir()
        shutil.copy(self.certificates.cert, certs / "cert.pem")
        shutil.copy(self.certificates.key, certs / "key.pem")
        oauth2 = self.folder / "oauth2.conf.ext"
        oauth2.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.introspection_url}\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n",
            encoding="utf-8",
        )
        oauth2.chmod(0o600)  # it holds the introspecting client's secret
        if os.getuid() == 0:
            os.chown(oauth2, pwd.getpwnam("dovecot").pw_uid, -1)  # read by the auth process
        p = self.ports
        conf = self.folder / "dovecot.conf"
        conf.write_text(
            f"""# written by tests/dovecot.py for one test run
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.folder}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
{users}
ssl = required
ssl_cert = <{certs}/cert.pem
ssl_key = <{certs}/key.pem
auth_mechanisms = xoauth2 oauthbearer
auth_verbose = yes
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2}
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={home}/%n
}}
# No growing delay after failed logins from 127.0.0.1: the tests fail on purpose.
# No chroot anywhere: a user other than root cannot chroot.
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {p["imap"]}
  }}
  inet_listener imaps {{
    port = {p["imaps"]}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {p["pop3"]}
  }}
  inet_listener pop3s {{
    port = {p["pop3s"]}
    ssl = yes
  }}
}}
""",
            encoding="utf-8",
        )
        return conf

    # -- life cycle

    def start(self) -> Dovecot:
        conf = self.write_config()
        self._proc = subprocess.Popen(
            [self.program, "-F", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, ended as a whole by stop()
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_WITHIN
        for name, port in self.ports.items():
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    raise AssertionError(f"dovecot exited at start:\n{self.diagnostics()}")
                if self._greets(name, port):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"dovecot's {name} listener did not greet within "
                        f"{_START_WITHIN} s:\n{self.diagnostics()}"
                    )
                time.sleep(0.05)

    def _greets(self, name: str, port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if name.endswith("s"):
                    context = self.certificates.client_context()
                    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                        return tls.recv(1) in (b"*", b"+")
                return sock.recv(1) in (b"*", b"+")
        except (OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                _end_group(proc)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what happened

    def log(self) -> str:
        """Dovecot's log so far (logins, refusals and the passdb's reasons)."""
        try:
            return (self.folder / "dovecot.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self) -> str:
        stderr = b""
        if self._proc is not None and self._proc.poll() is not None and self._proc.stderr:
            stderr = self._proc.stderr.read() or b""
        return stderr.decode("utf-8", "replace") + self.log()


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, a bounded wait, then SIGKILL; the group is gone."""
    deadline = time.monotonic() + _STOP_WITHIN
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_STOP_WITHIN / 2)
    # The master is gone (or stuck); make sure no child of the group outlives it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=max(deadline - time.monotonic(), 0.5))
    if proc.stderr is not None:
        proc.stderr.close()
