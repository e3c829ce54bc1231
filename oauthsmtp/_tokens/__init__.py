"""Keeping a token usable: from the token endpoint's answer to a token any caller can use.

Data flows one way: :mod:`oauthsmtp._oauth` obtains a token state (login,
refresh) -> :mod:`.manager` saves it in a store (:mod:`.stores`) under the
store's cross-process lock -> :mod:`.token` (:class:`AuthToken`) hands it to
the SMTP session and asks the manager again when it nears expiry.

- :mod:`.token`: ``AuthToken``, the current state of one login, refreshed on use.
- :mod:`.manager`: ``TokenManager``, single-flight refresh and the locked writes
  of one account's stored token.
- :mod:`.identify`: ``auth_identify`` (cached token or browser login),
  ``refresh_token``, ``revoke_token`` and ``logout``.
- :mod:`.apponly`: ``app_token`` and ``AppTokenRenewer``: app-only tokens (no refresh
  token), renewed by the same grant, single-flight under the store's lock.
- :mod:`.stores`: where serialized tokens live between processes.
"""
