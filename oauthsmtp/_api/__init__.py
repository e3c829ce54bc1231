"""HTTP sending transports: the Gmail API and Microsoft Graph, with SMTPSession's contract.

What it holds, bottom up (each module imports only those listed before it):

- ``answers``: reading one API answer (pure): sent, failed, unknown, refresh, wait, or a
  configuration refusal with its fix;
- ``http``: the HTTP client (one keep-alive ``requests`` session, total deadlines, capped
  answers, TLS verified, no redirects, no token in any output);
- ``session``: :class:`APISession`, the sending loop both APIs share (prepare the message
  once, post, read, refresh once after a 401, wait on 429/503, report a ``SendResult``);
- ``gmail``: :class:`GmailAPISession` (``users.messages.send``, raw message base64url);
- ``graph``: :class:`GraphSession` (``sendMail`` with a base64 MIME body, ``/me`` or
  ``/users/{id}``).

Data flows one way: an ``Email`` / ``EmailMessage`` is prepared by ``oauthsmtp._message``,
the token comes from ``oauthsmtp._tokens`` (refreshed through its single-flight path), the
request goes out through ``http``, and the answer comes back as a ``SendResult`` (the
same type ``oauthsmtp._smtp`` returns). Nothing here imports the command line or the
development provider.
"""
