"""Fixtures shared by the SMTP tests: throwaway certificates and hostile servers on loopback.

Loaded by conftest.py (``pytest_plugins``); a test module may still define its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hostile_smtp import HostileServer

from oauthsmtp.devserver import CertificateSet, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    """A CA and a server certificate for localhost/127.0.0.1/::1, one set per test module."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def hostile(certs: CertificateSet) -> Iterator[Callable[..., HostileServer]]:
    """Start a HostileServer (trusted certificate by default); stopped after the test."""
    started: list[HostileServer] = []

    def start(**kwargs: Any) -> HostileServer:
        kwargs.setdefault("tls_context", certs.server_context())
        server = HostileServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        assert not server.errors, server.errors
