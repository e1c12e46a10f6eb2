"""A T.38 fax terminal: UDPTL datagrams in, UDPTL datagrams out (T.30 carried as T.38 IFP packets).

How it works: one spandsp ``t38_terminal_state_t`` per call (T.30 plus spandsp's T.38 core, which
builds and reads the IFP packets), and our :mod:`zvonok.media.udptl` around it for the datagrams
(sequence numbers, redundancy). The owner feeds each received datagram to :meth:`T38Endpoint.receive`
and calls :meth:`T38Endpoint.tick` every 20 ms with the samples elapsed: spandsp's T.38 terminal paces
its own output by that count (``t38_terminal_send_timeout``), and what it sent in the meantime comes
back as datagrams. Nothing here reads a clock or a socket, so two terminals wired back to back in
memory exchange a document as fast as the CPU runs T.30 (a unit test does that, with packet loss).

The session parameters are the negotiated SDP's (:class:`zvonok.sip.sdp_t38.T38Params`): the T.38
version, transferred TCF (the only rate management a terminal can do over UDP, T.38 §D.2.3), the
peer's maximum datagram (the largest UDPTL datagram we send, redundancy trimmed to fit) and the
fastest image rate. Phase E and the result are as for the G.711 terminal (:class:`T30Terminal`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..media.udptl import UdptlReceiver, UdptlSender
from . import spandsp
from .endpoint import FaxEndpoint, T30Terminal

SAMPLES_PER_TICK = 160  # 20 ms at 8 kHz: spandsp's T.38 timing is counted in audio samples
# spandsp asks for indicator packets to go several times (its redundancy control); UDPTL redundancy
# already repeats every IFP in the following datagrams, so more than this is only noise on the wire
MAX_COPIES = 2


def _on_tx_packet(_core: Any, user_data: Any, buf: Any, length: int, count: int) -> int:
    endpoint = spandsp.ffi.from_handle(user_data)
    endpoint._sent(bytes(spandsp.ffi.buffer(buf, length)), count)
    return 0


_TX_PACKET = spandsp.ffi.callback("int(t38_core_state_t *, void *, const uint8_t *, int, int)", _on_tx_packet)


class T38Endpoint(T30Terminal):
    TRANSPORT = "t38"

    def __init__(
        self,
        *,
        calling: bool,
        tx_tiff: Path | None = None,
        rx_tiff: Path | None = None,
        ident: str = "",
        version: int = 0,
        max_datagram: int = 400,
        max_bit_rate: int = 14400,
        redundancy: int = 3,
    ) -> None:
        if tx_tiff is None and rx_tiff is None:
            raise ValueError("a fax endpoint sends a file, receives into one, or both")
        lib = spandsp.lib()
        self.calling = calling
        self.result = None
        self._lib = lib
        self._handle = spandsp.ffi.new_handle(self)
        self._state: Any = lib.t38_terminal_init(spandsp.ffi.NULL, 1 if calling else 0, _TX_PACKET, self._handle)
        if self._state == spandsp.ffi.NULL:
            raise MemoryError("t38_terminal_init failed")
        core = lib.t38_terminal_get_t38_core_state(self._state)
        self._core = core
        lib.t38_set_t38_version(core, version)
        lib.t38_set_data_rate_management_method(core, spandsp.T38_TRANSFERRED_TCF)
        # the IFP itself must leave room for the UDPTL header and at least one secondary
        lib.t38_set_max_datagram_size(core, max(max_datagram // 2, 72))
        lib.t38_set_fastest_image_data_rate(core, max_bit_rate)
        lib.t38_terminal_set_tep_mode(self._state, 0)
        lib.t38_terminal_set_fill_bit_removal(self._state, 0)
        self._setup_t30(
            lib, lib.t38_terminal_get_t30_state(self._state), tx_tiff=tx_tiff, rx_tiff=rx_tiff, ident=ident
        )
        self._sender = UdptlSender(redundancy=redundancy, max_datagram=max_datagram)
        self.receiver = UdptlReceiver()
        self._out: list[bytes] = []
        self.datagrams_sent = 0

    @classmethod
    def replacing(cls, audio: FaxEndpoint, **params: Any) -> T38Endpoint:
        """The T.38 terminal that takes over an audio one's call (re-INVITE to T.38): same role, file and
        ident. T.30 starts afresh, as a fax machine behind a gateway would see it (the audio terminal
        is closed by the caller)."""
        tx_tiff, rx_tiff = audio.files
        return cls(calling=audio.calling, tx_tiff=tx_tiff, rx_tiff=rx_tiff, ident=audio.ident, **params)

    def receive(self, datagram: bytes) -> None:
        """One UDPTL datagram from the peer (malformed ones are counted and dropped)."""
        if self._state is None:
            return
        for seq, ifp in self.receiver.receive(datagram):
            self._lib.t38_core_rx_ifp_packet(self._core, ifp, len(ifp), seq)

    def tick(self, samples: int = SAMPLES_PER_TICK) -> list[bytes]:
        """Let ``samples`` of time pass; the datagrams to send now."""
        if self._state is not None and self.result is None:
            self._lib.t38_terminal_send_timeout(self._state, samples)
        return self.datagrams()

    def datagrams(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def _sent(self, ifp: bytes, count: int) -> None:
        for _ in range(max(1, min(count, MAX_COPIES))):
            self._out.append(self._sender.send(ifp))
            self.datagrams_sent += 1

    def _free(self, state: Any) -> None:
        self._lib.t38_terminal_free(state)
