"""Sending over SMTP: from a prepared message to the server's answer.

Data flows one way, and each module imports only those before it in this list:

* ``sasl``: the SASL strings of XOAUTH2, OAUTHBEARER, PLAIN and LOGIN, and the reading of
  a refusal (pure: values in, values out).
* ``wire``: reply parsing and command encoding (pure), and one socket with a deadline on
  every read and write (:class:`~oauthsmtp._smtp.wire.Connection`).
* ``auth``: SMTP AUTH on a connection (mechanism choice, the SASL exchange, one refresh and
  one retry); :class:`~oauthsmtp._smtp.auth.TokenSource`, what it needs from a token.
* ``transact``: mail transactions on an authenticated connection: a message
  (:class:`~oauthsmtp._message.prepare.OutgoingMessage`) -> MAIL/RCPT/DATA (pipelined when
  offered) -> a :class:`~oauthsmtp.SendResult`.
* ``pool``: a session's connections (at most N), and a batch shared between them.
* ``connect``: opening one connection: connect, greeting, EHLO, STARTTLS or TLS, AUTH.
* ``verify``: :meth:`SMTPSession.verify`: one connection opened, authenticated, reset
  and closed without sending, and what it learnt (:class:`~oauthsmtp.VerifyResult`).
* ``background``: the queue and thread behind ``SMTPSession.submit``.
* ``options``: the checks of ``SMTPSession``'s arguments (pure).
* ``settings``: all of a session's connection arguments checked at once (pure), for both
  sessions.
* ``batch``: messages -> jobs, and ``send_many``'s rule for a batch an error stopped (pure).
* ``session``: :class:`~oauthsmtp.SMTPSession`, which owns a connector, a pool and a
  background sender, and turns messages into jobs and jobs into results.
* ``asyncwire``, ``asyncprotocol``, ``asyncsession``: :class:`~oauthsmtp.AsyncSMTPSession`,
  the asyncio twin (an asyncio connection; opening, AUTH and transactions with the same
  pure pieces as above; worker tasks sharing one queue of jobs).

So a message goes: ``Email``/``EmailMessage`` -> prepared bytes and envelope (``_message``)
-> a job in the session -> the pool -> a transaction on a connection -> the wire; the reply
comes back as the job's ``SendResult``.
"""
