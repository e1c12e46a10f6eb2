"""The IVR dialogue alone: keys and a hand-stepped clock in, prompts and transfers out."""

from __future__ import annotations

import pytest

from zvonok.telephony.ivr_dialogue import (
    MAX_HOPS,
    Hangup,
    IvrDialogue,
    IvrError,
    MenuSpec,
    Play,
    State,
    StopPlayback,
    Target,
    Transfer,
)

EXT = Target(kind="extension", payload={"number": "101"})


def menus(**first: object) -> dict[int, MenuSpec]:
    main = MenuSpec(id=1, prompt="main.wav", keys={"1": EXT, "2": Target(kind="menu", payload={"menu": 2}),
                                                   "9": Target(kind="hangup")},
                    repeat_key="*", timeout=5.0, retries=1,
                    timeout_target=Target(kind="ring", payload={"numbers": ["102", "103"]}), **first)  # type: ignore[arg-type]
    sub = MenuSpec(id=2, prompt="sub.wav", keys={"1": Target(kind="extension", payload={"number": "201"}),
                                                 "0": Target(kind="menu", payload={"menu": 1})})
    return {1: main, 2: sub}


def drain(d: IvrDialogue) -> list[object]:
    out = []
    while (a := d.next_action()) is not None:
        out.append(a)
    return out


def started(**first: object) -> IvrDialogue:
    d = IvrDialogue(menus(**first), 1, extensions=frozenset({"101", "102", "201", "2015"}))
    d.start(0.0)
    assert drain(d) == [Play(prompt="main.wav", menu_id=1)]
    return d


def test_key_goes_to_its_extension_stopping_the_greeting() -> None:
    d = started()
    d.dtmf("1", 1.0)
    assert drain(d) == [StopPlayback(), Transfer(target=EXT, menu_id=1)]
    assert d.state is State.DONE and d.get_timer() is None


def test_two_levels() -> None:
    d = started()
    d.play_finished(3.0)
    assert d.get_timer() == 8.0
    d.dtmf("2", 4.0)
    assert drain(d) == [Play(prompt="sub.wav", menu_id=2)]
    d.dtmf("1", 5.0)
    assert drain(d) == [StopPlayback(), Transfer(target=Target(kind="extension", payload={"number": "201"}), menu_id=2)]
    assert d.visited == [1, 2]


def test_timeout_retries_then_final_target() -> None:
    d = started()
    d.play_finished(2.0)
    d.timer(6.9)  # early: nothing
    assert drain(d) == []
    d.timer(7.0)
    assert drain(d) == [Play(prompt="main.wav", menu_id=1)]
    d.play_finished(9.0)
    d.timer(14.0)
    assert drain(d) == [Transfer(target=Target(kind="ring", payload={"numbers": ["102", "103"]}), menu_id=1,
                                 reason="timeout")]


def test_invalid_key_then_hangup_without_invalid_target() -> None:
    d = started()
    d.play_finished(1.0)
    d.dtmf("7", 2.0)
    assert drain(d) == [Play(prompt="main.wav", menu_id=1)]
    d.dtmf("7", 3.0)
    assert drain(d) == [StopPlayback(), Hangup(reason="invalid")]
    assert d.state is State.CLOSED


def test_repeat_key_and_hangup_key() -> None:
    d = started()
    d.dtmf("*", 1.0)
    assert drain(d) == [StopPlayback(), Play(prompt="main.wav", menu_id=1)]
    d.dtmf("9", 2.0)
    assert drain(d) == [StopPlayback(), Hangup(reason="caller_choice")]


def test_prompt_guard_when_the_end_is_never_reported() -> None:
    d = started()
    assert d.get_timer() == 125.0


def test_direct_dial_with_inter_digit_timeout_and_hash() -> None:
    d = started(direct_dial=True, digit_timeout=3.0)
    d.play_finished(1.0)
    d.dtmf("2", 2.0)  # a key (menu 2), but 201 and 2015 start with it: wait
    assert drain(d) == [] and d.state is State.COLLECTING and d.get_timer() == 5.0
    d.dtmf("0", 3.0)
    d.dtmf("1", 4.0)  # 201 is whole but 2015 starts with it: wait
    assert drain(d) == []
    d.dtmf("#", 5.0)
    assert drain(d) == [Transfer(target=Target(kind="extension", payload={"number": "201"}), menu_id=1)]


def test_direct_dial_whole_number_goes_at_once() -> None:
    d = started(direct_dial=True)
    d.play_finished(1.0)
    for i, k in enumerate("102"):
        d.dtmf(k, 2.0 + i)
    assert drain(d) == [Transfer(target=Target(kind="extension", payload={"number": "102"}), menu_id=1)]


def test_direct_dial_single_key_after_inter_digit_timeout() -> None:
    d = started(direct_dial=True, digit_timeout=3.0)
    d.play_finished(1.0)
    d.dtmf("2", 2.0)
    d.timer(5.0)
    assert drain(d) == [Play(prompt="sub.wav", menu_id=2)]


def test_direct_dial_unknown_number_is_invalid() -> None:
    d = started(direct_dial=True)
    d.play_finished(1.0)
    d.dtmf("1", 2.0)
    d.dtmf("9", 2.5)  # no extension starts with 19
    assert drain(d) == [Play(prompt="main.wav", menu_id=1)]
    assert d.failures == 1


def test_cycle_guard() -> None:
    loop = {1: MenuSpec(id=1, prompt="", timeout=1.0, retries=0, timeout_target=Target(kind="menu", payload={"menu": 2})),
            2: MenuSpec(id=2, prompt="", timeout=1.0, retries=0, timeout_target=Target(kind="menu", payload={"menu": 1}))}
    d = IvrDialogue(loop, 1)
    d.start(0.0)
    now = 0.0
    for _ in range(MAX_HOPS + 1):
        now += 1.0
        d.timer(now)
    assert drain(d)[-1] == Hangup(reason="loop")


def test_ignored_keys_and_misuse() -> None:
    d = started()
    d.dtmf("A", 1.0)
    assert drain(d) == []
    with pytest.raises(IvrError):
        d.start(1.0)
    with pytest.raises(IvrError):
        IvrDialogue(menus(), 5)
