"""The conference mixer: known tones in, FFT out — each party hears the others and never itself; a muted
party is heard by nobody; overrides (whisper) win; late frames are silence; odd packet times are cut."""

from __future__ import annotations

import numpy as np
import pytest

from zvonok.media.g711 import Codec, decode, encode
from zvonok.media.mixer import MAX_QUEUED_FRAMES, SPARE_FRAMES, TRIM_TICKS, Mixer
from zvonok.media.tones import goertzel_power, sine

TONES = {"a": 440.0, "b": 620.0, "c": 1000.0}
PRESENT = 1e6  # power of a 0.25 full-scale sine is ~ 3.4e6; G.711 noise and leakage stay far below 1e4


def run(mixer: Mixer, codecs: dict[str, Codec], ticks: int = 25) -> dict[str, np.ndarray]:
    """Feed each party its tone for ``ticks`` frames; what each party received, decoded."""
    generators = {key: sine(TONES[key]) for key in codecs}
    heard: dict[str, list[np.ndarray]] = {key: [] for key in codecs}
    for _ in range(ticks):
        for key, codec in codecs.items():
            mixer.feed(key, encode(codec, generators[key].read_frame()))
        for key, payload in mixer.mix().items():
            heard[str(key)].append(decode(codecs[str(key)], payload))
    return {key: np.concatenate(frames) if frames else np.zeros(0) for key, frames in heard.items()}


def powers(samples: np.ndarray) -> dict[str, float]:
    return {key: goertzel_power(samples, freq) for key, freq in TONES.items()}


@pytest.mark.parametrize("codecs", [
    {"a": Codec.PCMU, "b": Codec.PCMU, "c": Codec.PCMU},
    {"a": Codec.PCMU, "b": Codec.PCMA, "c": Codec.PCMA},  # mixed codecs in one room
])
def test_each_party_hears_the_others_and_not_itself(codecs: dict[str, Codec]) -> None:
    mixer = Mixer()
    for key, codec in codecs.items():
        mixer.add(key, codec)
    heard = run(mixer, codecs)
    for key, samples in heard.items():
        p = powers(samples)
        assert samples.size == 25 * 160
        assert p[key] < PRESENT / 100, (key, p)
        assert all(p[other] > PRESENT for other in TONES if other != key), (key, p)


def test_a_muted_party_is_heard_by_nobody_and_still_hears() -> None:
    mixer = Mixer()
    codecs = {key: Codec.PCMU for key in TONES}
    for key in codecs:
        mixer.add(key, Codec.PCMU)
    mixer.set_matrix("c", speaks=False)
    heard = run(mixer, codecs)
    for key in ("a", "b"):
        assert powers(heard[key])["c"] < PRESENT / 100
    assert powers(heard["a"])["b"] > PRESENT and powers(heard["b"])["a"] > PRESENT
    assert powers(heard["c"])["a"] > PRESENT and powers(heard["c"])["b"] > PRESENT
    mixer.set_matrix("c", speaks=True)  # unmuted: back in everyone's mix
    heard = run(mixer, codecs)
    assert powers(heard["a"])["c"] > PRESENT


def test_a_deaf_party_gets_no_frames_but_is_heard() -> None:
    mixer = Mixer()
    for key in TONES:
        mixer.add(key, Codec.PCMU, listens=key != "a")
    heard = run(mixer, {key: Codec.PCMU for key in TONES})
    assert heard["a"].size == 0
    assert powers(heard["b"])["a"] > PRESENT


def test_whisper_override_wins_over_listen_only() -> None:
    # supervisor "c" listens (heard by nobody) but whispers to agent "a": a hears c, b does not
    mixer = Mixer()
    for key in TONES:
        mixer.add(key, Codec.PCMU)
    mixer.set_matrix("c", speaks=False)
    mixer.set_matrix("a", hears={"c": True})
    assert mixer.hears("a", "c") and not mixer.hears("b", "c") and not mixer.hears("a", "a")
    heard = run(mixer, {key: Codec.PCMU for key in TONES})
    assert powers(heard["a"])["c"] > PRESENT and powers(heard["a"])["a"] < PRESENT / 100
    assert powers(heard["b"])["c"] < PRESENT / 100 and powers(heard["b"])["a"] > PRESENT
    assert powers(heard["c"])["a"] > PRESENT and powers(heard["c"])["b"] > PRESENT
    mixer.set_matrix("a", hears={"c": None})  # override removed: back to the uniform matrix
    assert not mixer.hears("a", "c")
    with pytest.raises(KeyError):
        mixer.set_matrix("a", hears={"a": True})


def test_missing_frames_are_silence_and_counted() -> None:
    mixer = Mixer()
    for key in TONES:
        mixer.add(key, Codec.PCMU)
    mixer.feed("a", encode(Codec.PCMU, sine(440.0).read_frame()))
    out = mixer.mix()
    assert mixer.party("b").missing == 1 and mixer.party("a").missing == 0
    assert powers(decode(Codec.PCMU, out["b"]))["a"] > PRESENT
    # a's own output: the silence of b and c only
    assert np.abs(decode(Codec.PCMU, out["a"]).astype(np.int32)).max() <= 8
    out = mixer.mix()  # nothing fed: everyone hears silence
    assert all(np.abs(decode(Codec.PCMU, p).astype(np.int32)).max() <= 8 for p in out.values())


def test_a_burst_is_kept_up_to_the_bound_and_odd_packet_times_are_cut_into_frames() -> None:
    mixer = Mixer()
    mixer.add("a", Codec.PCMU)
    mixer.add("b", Codec.PCMU)
    for _ in range(MAX_QUEUED_FRAMES):  # a stall's burst: every frame kept for the ticks being caught up
        mixer.feed("a", encode(Codec.PCMU, sine(440.0).read_frame()))
    assert len(mixer.party("a").frames) == MAX_QUEUED_FRAMES and mixer.party("a").trimmed == 0
    for _ in range(5):
        mixer.feed("a", encode(Codec.PCMU, sine(440.0).read_frame()))
    assert len(mixer.party("a").frames) == MAX_QUEUED_FRAMES and mixer.party("a").trimmed == 5
    mixer.trim(3)  # the clock gave up ticks: only the frames of the ticks it still owes stay
    assert len(mixer.party("a").frames) == 3 and mixer.party("a").trimmed == 14
    tone = sine(620.0)
    samples = np.concatenate([tone.read_frame() for _ in range(3)])
    mixer.feed("b", encode(Codec.PCMU, samples[:240]))  # 30 ms
    mixer.feed("b", encode(Codec.PCMU, samples[240:]))
    assert len(mixer.party("b").frames) == 3 and mixer.party("b").partial is None


def test_clipping_and_membership() -> None:
    mixer = Mixer()
    loud = np.full(160, 30000, dtype=np.int16)
    for key in "abc":
        mixer.add(key, Codec.PCMA)
        mixer.feed(key, encode(Codec.PCMA, loud))
    out = mixer.mix()
    assert decode(Codec.PCMA, out["a"]).min() > 30000  # 60000 clipped to full scale, not wrapped
    mixer.remove("b")
    assert len(mixer) == 2 and "b" not in mixer
    mixer.feed("b", b"\x00" * 160)  # a late packet of a party gone: ignored
    assert set(mixer.mix()) == {"a", "c"}
    assert Mixer().mix() == {}


def test_the_depth_grows_on_an_underflow_and_a_lasting_surplus_is_trimmed_slowly() -> None:
    mixer = Mixer()
    mixer.add("a", Codec.PCMU)
    mixer.add("b", Codec.PCMU)
    tone = sine(620.0)
    sent = [encode(Codec.PCMU, tone.read_frame()) for _ in range(5 * TRIM_TICKS)]
    index = {payload: i for i, payload in enumerate(sent[:5])}  # 620 Hz: the frames repeat every five
    frames = iter(sent)
    # frames arriving before each tick: one, but a late one at tick 10 (it comes with the next), and the
    # phone stalls for ticks 20-22 (its three frames come in a burst with the fourth)
    arrivals = [1] * (5 * TRIM_TICKS - 10)
    arrivals[10:12] = [0, 2]
    arrivals[20:24] = [0, 0, 0, 4]
    heard = []
    for count in arrivals:
        for _ in range(count):
            mixer.feed("a", next(frames))
        heard.append(index.get(mixer.mix()["b"], -1))
    party = mixer.party("a")
    # tick 20 still had the frame the late one left in hand; 21 and 22 are silence, the depth now 4
    assert party.missing == 3 and [i for i, at in enumerate(heard) if at == -1] == [10, 21, 22]
    steps = [(b - a) % 5 for a, b in zip(heard[23:], heard[24:], strict=False)]
    # continuous after the stall but for one frame dropped per window while the surplus lasted (not in the
    # first window: it had the underflows)
    assert [i + 24 for i, step in enumerate(steps) if step != 1] == [2 * TRIM_TICKS - 1, 3 * TRIM_TICKS - 1,
                                                                    4 * TRIM_TICKS - 1]
    assert all(step == 2 for step in steps if step != 1)
    assert party.trimmed == 3 and len(party.frames) == 0 and SPARE_FRAMES == 2
