"""Small helpers below everything else: they import nothing from the rest of the package
(except the error classes) and know nothing of OAuth, tokens or SMTP.

- :mod:`.clock`: ``utcnow``, the one wall clock (aware UTC).
- :mod:`.jsonobject`: ``load_json_object``, the one strict reader of JSON objects
  from untrusted bytes.
- :mod:`.files`: private directories, atomic 0600 writes, safe reads, temporary
  file sweeping and cross-process locks.
- :mod:`.home`: ``oauthsmtp_home``, where oauthsmtp keeps its files.
- :mod:`.tls`: verified TLS contexts (the system store plus ``SSL_CERT_FILE``) for
  the token endpoint and SMTP alike.
"""
