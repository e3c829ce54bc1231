"""Messages: from what the caller gives to the bytes that go on the wire.

Data flows one way, each module using only those before it::

    Email (email.py) ──> checks (checks.py: one function per text rule;
       │                        addresses.py: address parsing, IDNA 2008, RFC 5321 sizes)
       │
       └─> rendering (mime.py: an Email directly; any other message through the email
              │        package with a wire policy that folds address fields itself)
              │
              └─> prepare.py: prepare_message() -> OutgoingMessage (envelope + wire bytes,
                              Bcc removed, every line within 998 octets)

:func:`~oauthsmtp._message.prepare.prepare_message` is the one entry point the SMTP side
uses. Whatever it is given, it raises :class:`~oauthsmtp.ConfigurationError` (naming the
field and what is wrong) or returns a message that parses back to what was given.
"""
