"""The process's one watchdog thread: deadlines in order, cancellation, one thread for
many alarms, a bounded heap, and callbacks that fail without stopping it."""

from __future__ import annotations

import threading
import time

from oauthsmtp._util.watchdog import Watchdog, shared_watchdog

WAIT = 10.0  # a bound on every wait below; none is a timing assertion


def test_alarms_fire_in_deadline_order_from_one_thread() -> None:
    dog = Watchdog(name="test-watchdog")
    fired: list[tuple[int, str]] = []
    done = threading.Event()
    now = time.monotonic()
    for number, delay in ((3, 0.06), (1, 0.02), (2, 0.04)):

        def record(number: int = number) -> None:
            fired.append((number, threading.current_thread().name))
            if len(fired) == 3:
                done.set()

        dog.call_at(now + delay, record)
    assert done.wait(WAIT)
    assert [number for number, _ in fired] == [1, 2, 3]
    assert {name for _, name in fired} == {"test-watchdog"}
    assert sum(t.name == "test-watchdog" for t in threading.enumerate()) == 1


def test_an_earlier_alarm_wakes_a_sleeping_watchdog() -> None:
    """A far deadline first, then a near one: the near one is not held up by the far one."""
    dog = Watchdog()
    far = dog.call_later(3600, lambda: None)
    near = threading.Event()
    dog.call_later(0.01, near.set)
    assert near.wait(WAIT)
    far.cancel()


def test_a_cancelled_alarm_never_fires() -> None:
    dog = Watchdog()
    fired = threading.Event()
    after = threading.Event()
    alarm = dog.call_later(0.02, fired.set)
    alarm.cancel()
    alarm.cancel()  # idempotent
    dog.call_later(0.05, after.set)  # fires after the cancelled one's deadline
    assert after.wait(WAIT)
    assert not fired.is_set()
    assert alarm.cancelled


def test_a_failing_callback_does_not_stop_the_others() -> None:
    dog = Watchdog()
    later = threading.Event()

    def boom() -> None:
        raise RuntimeError("broken callback")

    dog.call_later(0.0, boom)
    dog.call_later(0.01, later.set)
    assert later.wait(WAIT)


def test_cancelled_alarms_do_not_pile_up() -> None:
    """10,000 requests that finish before their 1-hour deadline: the heap stays small."""
    dog = Watchdog()
    for _ in range(10_000):
        dog.call_later(3600, lambda: None).cancel()
    assert dog.pending == 0
    assert len(dog._heap) <= 128


def test_one_shared_watchdog_per_process() -> None:
    assert shared_watchdog() is shared_watchdog()
