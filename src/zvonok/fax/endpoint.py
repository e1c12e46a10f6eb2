"""A fax terminal fed G.711 frames: audio bytes in, audio bytes out (T.30 over V.17/V.29/V.27ter).

How it works: one spandsp ``fax_state_t`` (T.30 protocol + the fax modems) per call. The owner feeds
every received 20 ms G.711 payload to :meth:`FaxEndpoint.receive` and asks :meth:`FaxEndpoint.transmit`
for the next payload to send, at the same 20 ms pace. Nothing here reads a clock or a socket: time is
the count of samples passed through, so two endpoints wired back to back in memory exchange a document
as fast as the CPU runs the modems (a unit test does exactly that).

T.30 reaches phase E (call release) once; spandsp then calls our handler with a completion code
(``T30_ERR_*``). :attr:`FaxEndpoint.result` is set from it, with the page counts of
``t30_get_transfer_statistics``; :attr:`done` turns true. ECM is on: over a G.711 pass-through path
with little loss it repairs the odd damaged frame instead of failing the page.

The spandsp state is freed by :meth:`close` (idempotent; the owner calls it when the call ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..media import g711
from . import spandsp


@dataclass(frozen=True, kw_only=True)
class FaxResult:
    """How a fax call ended: ``ok`` when T.30 completed (``T30_ERR_OK``) with every page."""

    code: int
    text: str
    pages_tx: int
    pages_rx: int
    remote_ident: str
    bit_rate: int
    ecm: bool
    transport: str = "audio"  # "audio" (G.711 pass-through) | "t38"

    @property
    def ok(self) -> bool:
        return self.code == spandsp.T30_ERR_OK


def _on_phase_e(_t30: Any, user_data: Any, completion_code: int) -> None:
    endpoint = spandsp.ffi.from_handle(user_data)
    endpoint._phase_e(completion_code)


# one C trampoline for every endpoint; the endpoint itself travels as spandsp's user_data handle
_PHASE_E = spandsp.ffi.callback("void(t30_state_t *, void *, int)", _on_phase_e)


class T30Terminal:
    """What every fax terminal shares: T.30's settings (ident, ECM, compressions, the file) and the
    phase E report. Subclasses own the spandsp state that carries T.30 (audio modems, or T.38)."""

    TRANSPORT = "audio"
    result: FaxResult | None = None
    _t30: Any = None
    _handle: Any = None  # this terminal as spandsp's user_data (ffi.new_handle), set before _setup_t30

    def _setup_t30(self, lib: Any, t30: Any, *, tx_tiff: Path | None, rx_tiff: Path | None, ident: str) -> None:
        self._t30 = t30
        # T.30 identities are at most 20 characters of digits, '+' and space (T.30 §5.3.6.2.4)
        lib.t30_set_tx_ident(t30, ident[:20].encode("ascii", "replace"))
        lib.t30_set_ecm_capability(t30, 1)
        lib.t30_set_supported_compressions(t30, spandsp.SUPPORT_T4_T6)
        if tx_tiff is not None:
            lib.t30_set_tx_file(t30, str(tx_tiff).encode(), -1, -1)
        if rx_tiff is not None:
            lib.t30_set_rx_file(t30, str(rx_tiff).encode(), -1)
        lib.t30_set_phase_e_handler(t30, _PHASE_E, self._handle)

    @property
    def done(self) -> bool:
        return self.result is not None

    def _phase_e(self, code: int) -> None:
        lib = spandsp.lib()
        stats = spandsp.ffi.new("t30_stats_t *")
        lib.t30_get_transfer_statistics(self._t30, stats)
        ident = lib.t30_get_rx_ident(self._t30)
        remote = spandsp.ffi.string(ident).decode("ascii", "replace") if ident != spandsp.ffi.NULL else ""
        self.result = FaxResult(
            code=code,
            text=spandsp.completion_text(code),
            pages_tx=stats.pages_tx,
            pages_rx=stats.pages_rx,
            remote_ident=remote.strip(),
            bit_rate=stats.bit_rate,
            ecm=bool(stats.error_correcting_mode),
            transport=self.TRANSPORT,
        )

    # -- the spandsp state's end of life: each subclass names its own free function ---------------------
    _lib: Any = None
    _state: Any = None

    def _free(self, state: Any) -> None:
        raise NotImplementedError

    def hangup(self) -> None:
        """The call ended before phase E: let T.30 report how far it got (a failure code)."""
        if self._state is not None and self.result is None:
            self._lib.t30_terminate(self._t30)

    def close(self) -> None:
        """Free the spandsp state (after :meth:`hangup` when the call ended early)."""
        if self._state is not None:
            self.hangup()
            self._free(self._state)
            self._state = None

    def __del__(self) -> None:
        if getattr(self, "_state", None) is not None:
            self._free(self._state)
            self._state = None


class FaxEndpoint(T30Terminal):
    """One side of a fax call: ``calling`` sends ``tx_tiff``; the answering side receives into
    ``rx_tiff`` (either side may do either, as T.30 allows, but the engine uses these two shapes)."""

    def __init__(
        self,
        *,
        calling: bool,
        codec: g711.Codec = g711.Codec.PCMA,
        tx_tiff: Path | None = None,
        rx_tiff: Path | None = None,
        ident: str = "",
    ) -> None:
        if tx_tiff is None and rx_tiff is None:
            raise ValueError("a fax endpoint sends a file, receives into one, or both")
        lib = spandsp.lib()
        self.codec = codec
        self.calling = calling
        self.files = (tx_tiff, rx_tiff)
        self.ident = ident
        self.result = None
        self._lib = lib
        self._state: Any = lib.fax_init(spandsp.ffi.NULL, 1 if calling else 0)
        if self._state == spandsp.ffi.NULL:
            raise MemoryError("fax_init failed")
        self._handle = spandsp.ffi.new_handle(self)
        # transmit_on_idle: fax_tx fills every frame (silence between signals), as an RTP stream needs
        lib.fax_set_transmit_on_idle(self._state, 1)
        self._setup_t30(lib, lib.fax_get_t30_state(self._state), tx_tiff=tx_tiff, rx_tiff=rx_tiff, ident=ident)
        self._pcm = spandsp.ffi.new("int16_t[]", g711.FRAME_SAMPLES * 4)

    def receive(self, payload: bytes) -> None:
        """Feed one received G.711 payload (any length; normally 160 octets = 20 ms)."""
        if payload:
            self.write(g711.decode(self.codec, payload))

    def transmit(self, samples: int = g711.FRAME_SAMPLES) -> bytes:
        """The next ``samples`` of fax audio as a G.711 payload (silence once closed)."""
        return g711.encode(self.codec, self.read_samples(samples))

    # linear 16-bit PCM, as the media engine's audio tap and players carry it
    def write(self, samples: npt.NDArray[np.int16]) -> None:
        """Feed received audio (:class:`zvonok.media.recording.FrameWriter`)."""
        if self._state is None or not len(samples):
            return
        pcm = np.ascontiguousarray(samples, dtype=np.int16)
        self._lib.fax_rx(self._state, spandsp.ffi.from_buffer("int16_t[]", pcm), len(pcm))

    def read_samples(self, samples: int = g711.FRAME_SAMPLES) -> npt.NDArray[np.int16]:
        """The next ``samples`` of audio to send (silence once closed)."""
        if self._state is None:
            return np.zeros(samples, dtype=np.int16)
        if samples > len(self._pcm):
            self._pcm = spandsp.ffi.new("int16_t[]", samples)
        produced = self._lib.fax_tx(self._state, self._pcm, samples)
        pcm = np.frombuffer(spandsp.ffi.buffer(self._pcm, samples * 2), dtype=np.int16).copy()
        if produced < samples:
            pcm[max(produced, 0) :] = 0
        return pcm

    def read_frame(self) -> npt.NDArray[np.int16] | None:
        """The next 20 ms to send (:class:`zvonok.media.tones.FrameSource`; it never ends by itself)."""
        return self.read_samples(g711.FRAME_SAMPLES)

    def _free(self, state: Any) -> None:
        self._lib.fax_free(state)
