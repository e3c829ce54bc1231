"""Reading mail with the same token: XOAUTH2/OAUTHBEARER logins for imaplib and poplib objects.

What it holds, and which way data flows:

- ``rules`` (pure): which mechanism to use from the server's capabilities, whether the
  connection is fit for a token (TLS with a verified certificate, RFC 7628 §3), and what
  a refusal means (a fresh token may help, or not, and what to fix);
- ``login`` (I/O): :func:`~oauthsmtp.imap_authenticate` and
  :func:`~oauthsmtp.pop3_authenticate`, which run the SASL exchange on the caller's
  ``imaplib``/``poplib`` object with the encoders of :mod:`oauthsmtp._smtp.sasl`.

A token flows in, a logged-in IMAP/POP3 connection (or an error) comes out. This package
imports only :mod:`oauthsmtp._errors` and :mod:`oauthsmtp._smtp.sasl`.
"""
