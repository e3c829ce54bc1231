"""Sending limits: how many connections and messages a mailbox may use, shared by senders.

- :mod:`.rules`: :class:`~oauthsmtp.SendLimits` (validated, frozen) and the pure decisions
  every budget shares: the next free message slot in a sliding window, the rolling daily
  counts, the backoff after a transient reply, which replies are transient.
- :mod:`.budget`: the :class:`~oauthsmtp._limits.budget.SendBudget` protocol a session
  draws on (connection slots, message permits) and the in-process budget (threads of one
  process share it per mailbox). The Redis budget that processes on many machines share
  lives with the Redis store (``_tokens/stores/redisbudget.py``) and satisfies the same
  protocol.

It imports only ``_errors``; ``providers``, ``_tokens`` and ``_smtp`` import it.
"""
