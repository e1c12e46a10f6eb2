"""The media engine's one timer for many deadlines (media/deadlines.py), on a fake loop clock."""

from __future__ import annotations

from typing import Any

from zvonok.media.deadlines import Deadlines


class FakeHandle:
    def __init__(self, when: float, callback: Any) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """``call_at`` and ``time`` only; :meth:`advance` runs what is due, in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> FakeHandle:
        handle = FakeHandle(when, callback)
        self.handles.append(handle)
        return handle

    def live(self) -> list[FakeHandle]:
        return [h for h in self.handles if not h.cancelled]

    def advance(self, to: float) -> None:
        while True:
            due = sorted((h for h in self.live() if h.when <= to), key=lambda h: h.when)
            if not due:
                break
            handle = due[0]
            self.handles.remove(handle)
            self.now = max(self.now, handle.when)
            handle.callback()
        self.now = to


def test_due_entries_fire_in_order_with_one_timer() -> None:
    loop, fired = FakeLoop(), []
    deadlines = Deadlines(lambda key, when: fired.append((key, when)))
    for when, key in ((5.0, "c"), (1.0, "a"), (3.0, "b")):
        deadlines.at(loop, when, key)  # type: ignore[arg-type]
    assert len(loop.live()) == 1 and loop.live()[0].when == 1.0  # one timer, at the earliest
    loop.advance(3.0)
    assert fired == [("a", 1.0), ("b", 3.0)]
    assert len(deadlines) == 1 and [h.when for h in loop.live()] == [5.0]
    loop.advance(10.0)
    assert fired[-1] == ("c", 5.0) and len(deadlines) == 0 and loop.live() == []


def test_an_entry_pushed_while_firing_does_not_delay_an_earlier_one() -> None:
    """``fire`` re-arms a later check (as an inactivity check does): the head still fires on time."""
    loop, fired = FakeLoop(), []
    deadlines: Deadlines

    def fire(key: str, when: float) -> None:
        fired.append((key, when))
        if key == "a":
            deadlines.at(loop, when + 10.0, "a")  # type: ignore[arg-type]

    deadlines = Deadlines(fire)
    deadlines.at(loop, 1.0, "a")  # type: ignore[arg-type]
    deadlines.at(loop, 2.0, "b")  # type: ignore[arg-type]
    loop.advance(1.0)
    assert fired == [("a", 1.0)]
    assert min(h.when for h in loop.live()) == 2.0  # not 11.0: "b" is still due first
    loop.advance(2.0)
    assert fired == [("a", 1.0), ("b", 2.0)]
    loop.advance(11.0)
    assert fired[-1] == ("a", 11.0)


def test_an_early_timer_still_fires_what_is_due_and_clear_forgets_everything() -> None:
    loop, fired = FakeLoop(), []
    deadlines = Deadlines(lambda key, when: fired.append(key))
    deadlines.at(loop, 1.0, "a")  # type: ignore[arg-type]
    handle = loop.live()[0]
    loop.now = 1.0 - 0.0005  # the loop ran the timer half a millisecond early
    loop.handles.remove(handle)
    handle.callback()
    assert fired == ["a"]
    deadlines.at(loop, 4.0, "b")  # type: ignore[arg-type]
    deadlines.clear()
    assert len(deadlines) == 0 and loop.live() == []
    loop.advance(10.0)
    assert fired == ["a"]
