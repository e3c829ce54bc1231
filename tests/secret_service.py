"""A real, private Secret Service for tests: ``dbus-daemon`` + ``gnome-keyring-daemon``.

The session-scoped fixture :func:`secret_service` starts a D-Bus session bus in
a temporary folder (its own config: no service activation, so nothing else is
ever started on it), then ``gnome-keyring-daemon --foreground --unlock
--components=secrets`` on that bus with a password on stdin and ``HOME`` /
``XDG_*`` pointed at the temporary folder (so the user's real keyrings are
never touched). ``--unlock`` creates the ``login`` collection, unlocked, and
makes it the default alias, which is where keyring's SecretService backend
writes. The fixture waits (bounded) until ``org.freedesktop.secrets`` is owned
and the default collection is unlocked, sets ``DBUS_SESSION_BUS_ADDRESS`` for
the rest of the test session (restored at the end) and yields a
:class:`SecretService` handle. Both processes are stopped at session end.

keyring picks its default backend once per process, so tests should use the
backend explicitly: ``KeyringStore(..., backend=secret_service.backend())``, or
``keyring.set_keyring(secret_service.backend())``. Subprocesses need
``secret_service.env``.

Needs the Debian packages ``dbus-daemon`` and ``gnome-keyring`` and the Python
packages ``secretstorage`` and ``jeepney`` (keyring's dependencies on Linux).
When something is missing the fixture skips, or fails when ``$CI`` is set.

Registering: ``tests/conftest.py`` can say ``pytest_plugins = ["secret_service"]``
(this folder is on ``sys.path`` under pytest's default import mode); a test
module can say the same.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from components import require

__all__ = ["SecretService", "running_secret_service", "secret_service"]

BUS_NAME = "org.freedesktop.secrets"
KEYRING_PASSWORD = b"oauthsmtp-test-keyring"
START_TIMEOUT = 15.0

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

APT_PACKAGES = ("dbus-daemon", "gnome-keyring")


@dataclass
class SecretService:
    """A running private Secret Service.

    Attributes:
        address: the D-Bus address of its session bus.
        directory: the temporary folder holding the bus socket, the keyring
            files and the daemons' logs.
        env: the environment variables a subprocess needs to reach it.
    """

    address: str
    directory: pathlib.Path
    env: dict[str, str] = field(default_factory=dict)

    def backend(self) -> Any:
        """A new ``keyring.backends.SecretService.Keyring`` (talks to this service
        while ``DBUS_SESSION_BUS_ADDRESS`` is :attr:`address`, as the fixture sets it)."""
        from keyring.backends import SecretService as backend_module

        return backend_module.Keyring()

    def items(self, service: str) -> list[dict[str, str]]:
        """The attributes of every item whose keyring ``service`` attribute is ``service``."""
        import secretstorage
        from jeepney.io.blocking import open_dbus_connection

        with contextlib.closing(open_dbus_connection(self.address)) as connection:
            collection = secretstorage.get_default_collection(connection)
            return [item.get_attributes() for item in collection.search_items({"service": service})]


def _missing() -> list[str]:
    missing = [
        f"{program} (Debian package {package})"
        for program, package in (
            ("dbus-daemon", "dbus-daemon"),
            ("gnome-keyring-daemon", "gnome-keyring"),
        )
        if shutil.which(program) is None
    ]
    for module in ("secretstorage", "jeepney"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {module}")
    return missing


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _log_tail(path: pathlib.Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-2000:]


def _ready(address: str) -> bool:
    """True once the Secret Service name is owned and its default collection is unlocked."""
    import secretstorage
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    try:
        with contextlib.closing(open_dbus_connection(address)) as connection:
            reply = connection.send_and_get_reply(message_bus.NameHasOwner(BUS_NAME), timeout=2)
            if not reply.body[0]:
                return False
            collection = secretstorage.get_default_collection(connection)
            return not collection.is_locked()
    except (OSError, secretstorage.exceptions.SecretStorageException):
        return False


@contextlib.contextmanager
def running_secret_service(timeout: float = START_TIMEOUT) -> Iterator[SecretService]:
    """Start a private session bus and gnome-keyring-daemon; stop both on exit.

    Does not change ``os.environ`` (the fixture does).

    Raises:
        RuntimeError: a daemon exited or the service was not ready within ``timeout``.
    """
    with tempfile.TemporaryDirectory(prefix="oauthsmtp-secrets-") as raw:
        directory = pathlib.Path(raw)
        for name in ("home", "data", "config", "cache", "runtime"):
            (directory / name).mkdir(mode=0o700)
        config = directory / "bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=directory / "bus"))
        bus_log = directory / "dbus.log"
        keyring_log = directory / "gnome-keyring.log"
        processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            with bus_log.open("wb") as log:
                bus = subprocess.Popen(
                    [
                        "dbus-daemon",
                        f"--config-file={config}",
                        "--nofork",
                        "--nopidfile",
                        "--print-address=1",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                )
            processes.append(("dbus-daemon", bus))
            assert bus.stdout is not None
            with bus.stdout:
                address = bus.stdout.readline().decode().strip()
            if not address:
                raise RuntimeError(f"dbus-daemon did not start: {_log_tail(bus_log)}")
            env = {
                key: value
                for key, value in os.environ.items()
                if key not in ("DISPLAY", "WAYLAND_DISPLAY", "GNOME_KEYRING_CONTROL")
            }
            env.update(
                DBUS_SESSION_BUS_ADDRESS=address,
                HOME=str(directory / "home"),
                XDG_DATA_HOME=str(directory / "data"),
                XDG_CONFIG_HOME=str(directory / "config"),
                XDG_CACHE_HOME=str(directory / "cache"),
                XDG_RUNTIME_DIR=str(directory / "runtime"),
            )
            with keyring_log.open("wb") as log:
                daemon = subprocess.Popen(
                    [
                        "gnome-keyring-daemon",
                        "--foreground",
                        "--unlock",
                        "--components=secrets",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    env=env,
                )
            processes.append(("gnome-keyring-daemon", daemon))
            assert daemon.stdin is not None
            with daemon.stdin:
                daemon.stdin.write(KEYRING_PASSWORD)
            deadline = time.monotonic() + timeout
            while not _ready(address):
                for name, process in processes:
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with status {process.returncode}: "
                            f"{_log_tail(bus_log)} {_log_tail(keyring_log)}"
                        )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the Secret Service was not ready after {timeout:g} s: "
                        f"{_log_tail(keyring_log)}"
                    )
                time.sleep(0.05)
            yield SecretService(
                address=address,
                directory=directory,
                env={"DBUS_SESSION_BUS_ADDRESS": address},
            )
        finally:
            for _name, process in reversed(processes):
                _stop(process)


@pytest.fixture(scope="session")
def secret_service() -> Iterator[SecretService]:
    """A real Secret Service on a private session bus, for the whole test session.

    Sets ``DBUS_SESSION_BUS_ADDRESS`` while it runs. Skips when dbus-daemon,
    gnome-keyring or secretstorage is missing, and fails instead when ``$CI``
    is set.
    """
    missing = _missing()
    require(
        not missing,
        "a real Secret Service (" + ", ".join(missing) + ")",
        f"on Debian: apt-get install {' '.join(APT_PACKAGES)}",
    )
    with contextlib.ExitStack() as stack:
        try:
            service = stack.enter_context(running_secret_service())
        except RuntimeError as exc:
            pytest.fail(f"could not start the test Secret Service: {exc}", pytrace=False)
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("DBUS_SESSION_BUS_ADDRESS", service.address)
        yield service
