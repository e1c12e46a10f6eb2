"""Supervisor listen / whisper / barge as mixer matrix settings: every cell of each mode, the mode applied
to a real mixer with 440 / 620 / 1000 Hz tones (customer / agent / supervisor) and the mix checked by its
spectrum, switched mid-session in every order; ChanSpy's keys; the session's audit trail."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from zvonok.media.g711 import Codec, decode, encode
from zvonok.media.mixer import Mixer
from zvonok.media.tones import goertzel_power, sine
from zvonok.telephony.monitor_matrix import (
    MonitorMode,
    MonitorSession,
    Role,
    hears,
    mode_for_key,
    overrides,
)

C, A, S = Role.CUSTOMER, Role.AGENT, Role.SUPERVISOR
KEYS = {C: "cust", A: "agent", S: "sup"}
TONES = {C: 440.0, A: 620.0, S: 1000.0}
PRESENT = 1e6  # a 0.25 full-scale sine is ~3.4e6 (see test_media_mixer)
ABSENT = 1e4

EXPECTED = {  # listener -> the speakers it hears
    MonitorMode.LISTEN: {C: {A}, A: {C}, S: {C, A}},
    MonitorMode.WHISPER: {C: {A}, A: {C, S}, S: {C, A}},
    MonitorMode.BARGE: {C: {A, S}, A: {C, S}, S: {C, A}},
}


@pytest.mark.parametrize("mode", list(MonitorMode))
def test_every_cell_of_each_mode(mode: MonitorMode) -> None:
    for listener, speaker in itertools.product(Role, Role):
        assert hears(mode, listener, speaker) == (speaker in EXPECTED[mode][listener]), (
            mode,
            listener,
            speaker,
        )


def test_overrides_name_every_other_party_of_every_row() -> None:
    rows = overrides(MonitorMode.WHISPER, KEYS)
    assert rows == {
        "cust": {"agent": True, "sup": False},
        "agent": {"cust": True, "sup": True},
        "sup": {"cust": True, "agent": True},
    }


def apply(mixer: Mixer, mode: MonitorMode) -> None:
    for key, row in overrides(mode, KEYS).items():
        mixer.set_matrix(key, hears=row)


def run(mixer: Mixer, ticks: int = 25) -> dict[Role, np.ndarray]:
    generators = {role: sine(freq) for role, freq in TONES.items()}
    heard: dict[Role, list[np.ndarray]] = {role: [] for role in Role}
    by_key = {key: role for role, key in KEYS.items()}
    for _ in range(ticks):
        for role, key in KEYS.items():
            mixer.feed(key, encode(Codec.PCMU, generators[role].read_frame()))
        for key, payload in mixer.mix().items():
            heard[by_key[str(key)]].append(decode(Codec.PCMU, payload))
    return {role: np.concatenate(frames) if frames else np.zeros(160) for role, frames in heard.items()}


def check(mixer: Mixer, mode: MonitorMode) -> None:
    heard = run(mixer)
    for listener in Role:
        for speaker in Role:
            power = goertzel_power(heard[listener], TONES[speaker])
            if speaker in EXPECTED[mode][listener]:
                assert power > PRESENT, (mode, listener, speaker, power)
            else:
                assert power < ABSENT, (mode, listener, speaker, power)
        for speaker in EXPECTED[mode][listener]:
            assert mixer.hears(KEYS[listener], KEYS[speaker])


@pytest.mark.parametrize("sequence", list(itertools.permutations(MonitorMode)))
def test_modes_switched_mid_session_on_a_real_mixer(sequence: tuple[MonitorMode, ...]) -> None:
    mixer = Mixer()
    for key in KEYS.values():
        mixer.add(key, Codec.PCMU)
    for mode in (*sequence, sequence[0]):  # and back to the first: no override of an earlier mode lingers
        apply(mixer, mode)
        check(mixer, mode)


def test_chanspy_keys() -> None:
    assert [mode_for_key(d) for d in "456"] == [MonitorMode.LISTEN, MonitorMode.WHISPER, MonitorMode.BARGE]
    assert mode_for_key("1") is None and mode_for_key("#") is None


def test_session_audit_trail() -> None:
    session = MonitorSession(
        id="m1",
        tenant_id=7,
        call_id="c1",
        supervisor="723",
        agent="722",
        mode=MonitorMode.LISTEN,
        started_at=100.0,
    )
    assert session.switch(MonitorMode.LISTEN, 101.0) is None  # the mode already: nothing audited
    assert session.switch(MonitorMode.WHISPER, 102.0) is not None
    assert session.switch(MonitorMode.BARGE, 103.5) is not None
    assert session.stop(104.0) is not None
    assert session.stop(105.0) is None
    assert not session.active
    assert [(e.action, e.mode, e.at) for e in session.trail] == [
        ("start", MonitorMode.LISTEN, 100.0),
        ("mode", MonitorMode.WHISPER, 102.0),
        ("mode", MonitorMode.BARGE, 103.5),
        ("stop", MonitorMode.BARGE, 104.0),
    ]
    with pytest.raises(ValueError, match="ended"):
        session.switch(MonitorMode.LISTEN, 106.0)
