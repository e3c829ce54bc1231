"""Token stores: where serialized tokens live between processes.

- :mod:`.base`: ``TokenKey`` (token endpoint, client id, account) and the
  ``TokenStore`` protocol (load, save, delete, a cross-process lock, keys);
  it knows no implementation.
- :mod:`.memory`, :mod:`.filestore`, :mod:`.keyringstore`: the implementations;
  each imports only :mod:`.base` and :mod:`oauthsmtp._util`.
- :mod:`.choose`: ``default_store`` picks one from ``$OAUTHSMTP_STORE``; it
  imports the implementations, never the other way round.

Values are opaque strings (``AuthToken.to_json()``); a store never parses a
token and no message or log line written here contains a stored value.
"""
