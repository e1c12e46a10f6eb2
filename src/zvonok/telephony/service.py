"""The SIP service: transports in, transaction layer, the methods we serve, transports out.

How it works: every datagram or framed stream message is parsed; a malformed request is answered
statelessly with the status its error names (400, 505 …) and a malformed response is dropped
(RFC 4475 §3.1.2). Good messages go through the sans-I/O :class:`TransactionLayer`, which absorbs
retransmissions and runs the RFC 3261 timers; this adapter re-arms one ``loop.call_at`` for its
earliest deadline (the aioquic shape). New requests are checked (§8.2: method, URI scheme, Require,
content) and handed to their handler: REGISTER to the registrar, OPTIONS answered here (phones use it
as a keep-alive). Nothing a peer sends can raise out of this class: the worst is a 500 and a log line.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from ssl import SSLContext
from typing import TYPE_CHECKING

from zvonok import metrics
from zvonok.config import Settings
from zvonok.logs import get_logger
from zvonok.sip.dtmf_info import DTMF_INFO_TYPES
from zvonok.sip.errors import SipParseError
from zvonok.sip.headers import get_param
from zvonok.sip.message import Request, Response, make_response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import (
    AckReceived,
    CancelReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    State,
    Transaction,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
)
from zvonok.sip.transaction_messages import build_cancel
from zvonok.sip.uas import check_request
from zvonok.transport.tcp import Dial, TcpLimits, TcpTransport
from zvonok.transport.tls import ServerCertificate, client_context
from zvonok.transport.udp import UdpTransport, open_udp

from .registrar import Lookup, Registrar

if TYPE_CHECKING:
    from .b2bua import CallEngine
    from .mwi import Mwi
    from .presence import BusyLamps

ClientHandler = Callable[[object], None]

log = get_logger(__name__)

ALLOWED_METHODS = ("REGISTER", "OPTIONS", "ACK", "CANCEL")
CALL_METHODS = ("INVITE", "BYE", "UPDATE", "INFO", "NOTIFY", "REFER")
ACCEPTED_TYPES = ("application/sdp",)
# legacy INFO (RFC 6086 §2) as desk phones send their keys: zvonok.sip.dtmf_info
INFO_TYPES = (*ACCEPTED_TYPES, *sorted(DTMF_INFO_TYPES))
USER_AGENT = "Zvonok"


class SipService:
    def __init__(self, settings: Settings, registrar: Registrar) -> None:
        self.settings = settings
        self.registrar = registrar
        # client transactions that ended since the outermost _process began: their handlers are dropped
        # when it returns (an event of this very input may still be on its way to the handler)
        self._ended: list[ClientTransaction] = []
        self._depth = 0
        self.layer = TransactionLayer(
            t1=settings.sip_t1, t2=settings.sip_t2, t4=settings.sip_t4,
            branch_factory=lambda: "z9hG4bK" + os.urandom(8).hex(), on_terminated=self._ended_append,
        )
        self.udp: UdpTransport | None = None
        self.tcp: TcpTransport | None = None
        self.tls: TcpTransport | None = None  # SIP over TLS: the same stream transport with a certificate
        self.certificate: ServerCertificate | None = None
        self.tls_port = 0
        self.local: tuple[str, int] = (settings.sip_host, settings.sip_port)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[ClientTransaction, ClientHandler] = {}
        self._pending_cancels: dict[ClientTransaction, str | None] = {}
        self.calls: CallEngine | None = None  # set by the composition root when calls are served
        self.mwi: Mwi | None = None  # message-waiting SUBSCRIBEs (telephony/mwi.py), set with voicemail
        self.presence: BusyLamps | None = None  # dialog and presence SUBSCRIBEs (telephony/presence.py)
        # the trunks we may open connections to: peer -> (its host name for SNI, verify its certificate?)
        self.dial_targets: Callable[[Peer], tuple[str, bool] | None] | None = None
        self._client_contexts: dict[bool, SSLContext] = {}
        self.t1 = settings.sip_t1
        self.t2 = settings.sip_t2

    @property
    def local_host(self) -> str:
        return self.settings.sip_advertised_host or self.local[0]

    @property
    def local_port(self) -> int:
        return self.local[1]

    def port_for(self, transport: str) -> int:
        """Our port for ``transport`` (Via sent-by, Contact): TLS listens on its own."""
        return self.tls_port if transport == "tls" else self.local[1]

    @property
    def client_handlers(self) -> int:
        """Client transactions whose handler we still keep (each holds its call): 0 once all have ended."""
        return len(self._clients)

    @property
    def supported(self) -> tuple[str, ...]:
        """SIP extensions we do (RFC 3261 §19.2): Path in the registrar (RFC 3327: a REGISTER from an edge
        may say ``Require: path``), session timers with calls (RFC 4028)."""
        return ("path", "timer") if self.calls is not None else ("path",)

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        methods = ALLOWED_METHODS + CALL_METHODS if self.calls is not None else ALLOWED_METHODS
        return methods + ("SUBSCRIBE",) if self.mwi is not None or self.presence is not None else methods

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        host, port = self.settings.sip_host, self.settings.sip_port
        # UDP and TCP share one port number; with port 0 take UDP's free port and retry if TCP's is taken
        for _attempt in range(20):
            self.udp = await open_udp(host, port, self._on_datagram)
            self.tcp = TcpTransport(self._on_stream, self.settings.sip_max_message_size, self._tcp_limits())
            try:
                await self.tcp.start(host, self.udp.local[1])
            except OSError:
                self.udp.close()
                if port != 0:
                    raise
                continue
            break
        assert self.udp is not None and self.tcp is not None
        self.local = (host, self.udp.local[1])
        self.tcp.dialer = self._dial
        if self.settings.sip_tls_cert is not None and self.settings.sip_tls_key is not None:
            self.certificate = ServerCertificate(self.settings.sip_tls_cert, self.settings.sip_tls_key)
            self.tls = TcpTransport(self._on_stream, self.settings.sip_max_message_size, self._tcp_limits(),
                                    ssl=self.certificate.context)
            # the same deadlines, and the same caps counted together with SIP-TCP: the descriptor budget
            # (zvonok.server) reserves sip_tcp_max_connections for SIP streams, TLS included
            assert self.tcp is not None
            self.tls.table = self.tcp.table
            self.tls.dialer = self._dial
            await self.tls.start(host, self.settings.sip_tls_port)
            self.tls_port = self.tls.local[1]
            task = asyncio.ensure_future(self._watch_certificate(self.certificate))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _dial(self, peer: Peer) -> Dial | None:
        """How to connect to ``peer`` when nothing is open to it: only trunks are connected to."""
        target = self.dial_targets(peer) if self.dial_targets is not None else None
        if target is None:
            return None
        host, verify = target
        if peer.transport != "tls":
            return Dial()
        context = self._client_contexts.get(verify)
        if context is None:
            context = self._client_contexts[verify] = client_context(verify=verify,
                                                                     ca_file=self.settings.sip_tls_ca_file)
        return Dial(ssl=context, server_hostname=host)

    def _tcp_limits(self) -> TcpLimits:
        return TcpLimits(
            max_connections=self.settings.sip_tcp_max_connections,
            max_per_address=self.settings.sip_tcp_max_per_address,
            idle_timeout=self.settings.sip_tcp_idle_timeout,
            message_timeout=self.settings.sip_tcp_message_timeout,
            first_message_timeout=self.settings.sip_tcp_first_message_timeout)

    async def _watch_certificate(self, certificate: ServerCertificate) -> None:
        while True:
            await asyncio.sleep(self.settings.sip_tls_reload_interval)
            certificate.reload_if_changed()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            await self.tcp.close()
        if self.tls is not None:
            await self.tls.close()

    # -- input -------------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, peer: Peer) -> None:
        if data.strip(b"\r\n\x00 ") == b"":
            return  # keep-alive (RFC 5626 §3.5.1 CRLF, or a bare NUL some phones send)
        try:
            msg = parse_datagram(data, max_size=self.settings.sip_max_message_size)
        except SipParseError as exc:
            self._reject(exc, peer)
            return
        except Exception:  # noqa: BLE001 - a parser bug must not take the service down
            metrics.child(metrics.ERRORS, "sip_parse").inc()
            log.exception("unexpected error parsing a datagram", peer=str(peer), size=len(data))
            return
        self._on_message(msg, peer)

    def _on_stream(self, item: Request | Response | SipParseError, raw: bytes, peer: Peer) -> None:
        if isinstance(item, SipParseError):
            self._reject(item, peer)
        else:
            self._on_message(item, peer)

    def _reject(self, exc: SipParseError, peer: Peer) -> None:
        metrics.child(metrics.SIP_PARSE_ERRORS, peer.transport).inc()
        request = exc.partial
        log.debug("malformed sip message", peer=str(peer), error=exc.reason)
        if not isinstance(request, Request) or request.method == "ACK":
            return  # malformed responses and ACKs are dropped (RFC 4475 §3.1.2.5, §3.1.2.19)
        try:
            response = make_response(request, exc.status, exc.reason)
            response.headers.add("Server", USER_AGENT)
            self._send(response.to_bytes(), peer)
            metrics.child(metrics.SIP_MESSAGES_OUT, peer.transport, "response", metrics.method_label(request.method),
                          str(exc.status)).inc()
        except Exception:  # noqa: BLE001 - answering garbage is best effort
            metrics.child(metrics.ERRORS, "sip_reject").inc()

    def _on_message(self, msg: Request | Response, peer: Peer) -> None:
        is_request = isinstance(msg, Request)
        metrics.child(metrics.SIP_MESSAGES_IN,
            peer.transport, "request" if is_request else "response",
            metrics.method_label(msg.method if isinstance(msg, Request) else msg.cseq.method),
            "" if isinstance(msg, Request) else str(msg.status),
        ).inc()
        try:
            if is_request and self.settings.sip_force_rport and not peer.reliable:
                via = msg.top_via
                if get_param(via.params, "rport") is None:
                    # filled with the source port when the layer stamps the Via (which rewrites it once)
                    via.params["rport"] = None
            events = self.layer.receive(msg, peer, self._now())
            self._process(events)
        except SipParseError as exc:
            self._reject(exc, peer)
        except Exception:  # noqa: BLE001
            metrics.child(metrics.ERRORS, "sip_receive").inc()
            log.exception("unexpected error handling a sip message", peer=str(peer))

    # -- the transaction user ------------------------------------------------------------------------
    def _ended_append(self, txn: Transaction) -> None:
        if isinstance(txn, ClientTransaction):
            self._ended.append(txn)

    def _process(self, events: Sequence[Event]) -> None:
        self._depth += 1
        try:
            self._handle(events)
        finally:
            self._depth -= 1
        if not self._depth and self._ended:
            # a handler holds its leg and so the whole call: it goes with its transaction, which most
            # often ends silently by a timer (D, K, M) long after the call did
            ended, self._ended = self._ended, []
            for txn in ended:
                self._clients.pop(txn, None)
                self._pending_cancels.pop(txn, None)

    def _handle(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._dispatch(event.transaction, event.request, event.peer)
            elif isinstance(event, (ResponseReceived, TransactionTimeout, TransportError)):
                txn = event.transaction
                if isinstance(event, ResponseReceived):
                    self._trust(event.peer)  # it answered a request of ours: a device we chose to reach
                if isinstance(txn, ClientTransaction):
                    if txn in self._pending_cancels:
                        reason = self._pending_cancels.pop(txn)
                        if isinstance(event, ResponseReceived) and event.response.status < 200:
                            self.cancel(txn, reason)  # §9.1: the CANCEL waited for a provisional response
                    handler = self._clients.get(txn)
                    if handler is not None:
                        if not isinstance(event, ResponseReceived) or txn.state is State.TERMINATED:
                            del self._clients[txn]
                        handler(event)
                elif isinstance(event, TransactionTimeout) and self.calls is not None:
                    self.calls.on_invite_timeout(txn)
            elif isinstance(event, AckReceived):
                if self.calls is not None:
                    self.calls.on_ack(event.request, event.peer)
            elif isinstance(event, CancelReceived):
                if self.calls is not None:
                    self.calls.on_cancel(event.transaction, event.request, event.invite)
                else:  # §9.2: no INVITE transaction can match
                    self._respond(event.transaction, make_response(event.request, 481, to_tag=_tag()))
        for item in self.layer.data_to_send():
            self._send(item.data, item.peer)
        self._arm_timer()

    def _dispatch(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        error = check_request(request, allowed_methods=self.allowed_methods,
                              content_types=INFO_TYPES if request.method == "INFO" else ACCEPTED_TYPES,
                              supported=self.supported, to_tag=_tag(), secure=peer.transport == "tls")
        if error is not None:
            self._respond(txn, error)
        elif request.method == "SUBSCRIBE" and (self.mwi is not None or self.presence is not None):
            package = (request.headers.get("event") or "").split(";")[0].strip().lower()
            servers = [s for s in (self.presence, self.mwi) if s is not None]
            # the package's server; an unknown package gets its 489 (Allow-Events) from the first one
            next((s for s in servers if package in s.events), servers[0]).on_subscribe(txn, request, peer)
        elif self.calls is not None and request.method in CALL_METHODS + ("OPTIONS",) and request.to.tag:
            self.calls.on_request(txn, request, peer)
        elif self.calls is not None and request.method == "INVITE":
            self.calls.on_invite(txn, request, peer)
        elif request.method in CALL_METHODS:
            self._respond(txn, make_response(request, 481, to_tag=_tag()))  # outside any dialog
        elif request.method == "REGISTER":
            result = self.registrar.handle_now(request, peer, time.time())
            if isinstance(result, Lookup):  # credentials not in memory: ask the database in a task
                task = asyncio.ensure_future(self._register(txn, request, peer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif result is not None:
                self._answer_register(txn, result)
        elif request.method == "OPTIONS":
            self._respond(txn, make_response(request, 200, to_tag=_tag(), headers=[
                ("Allow", ", ".join(self.allowed_methods)), ("Accept", "application/sdp"),
                ("Accept-Language", "en, ru"), ("Supported", ", ".join(self.supported)),
            ]))

    async def _register(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        try:
            response = await self.registrar.handle(request, peer, time.time())
        except Exception:  # noqa: BLE001 - answer 500 rather than leave the phone retransmitting
            metrics.child(metrics.ERRORS, "registrar").inc()
            log.exception("registrar failed", peer=str(peer), call_id=request.headers.get("call-id"))
            response = make_response(request, 500, to_tag=_tag())
        if response is not None:
            self._answer_register(txn, response)

    def _answer_register(self, txn: ServerTransaction, response: Response) -> None:
        """A 200 only once the bindings it lists are committed (group commit: see ``GroupCommit``)."""
        if response.status != 200:
            self._respond(txn, response)
            return

        def answer(durable: bool) -> None:
            if durable:
                self._respond(txn, response)
            else:  # the phone tries again shortly; its binding is kept in memory and written later
                self._respond(txn, make_response(txn.request, 500, "Registration Not Stored", to_tag=_tag(),
                                                 headers=[("Retry-After", "5")]))

        self.registrar.location.when_durable(answer)

    def _respond(self, txn: ServerTransaction, response: Response) -> None:
        response.headers.add("Server", USER_AGENT)
        if 200 <= response.status < 300 and txn.request.method in ("REGISTER", "INVITE"):
            # a REGISTER or INVITE accepted (authenticated, or from a trunk's trusted addresses): its
            # connection is a phone's or a carrier's, never evicted for a newcomer at the overall cap
            self._trust(txn.peer)
        metrics.child(metrics.SIP_MESSAGES_OUT, txn.peer.transport, "response", metrics.method_label(txn.request.method),
                                        str(response.status)).inc()
        self.layer.respond(txn, response, self._now())
        self._process(())

    # -- the stack the call engine uses ---------------------------------------------------------------
    def respond(self, txn: ServerTransaction, response: Response) -> None:
        self._respond(txn, response)

    def send_request(self, request: Request, peer: Peer, handler: ClientHandler) -> ClientTransaction:
        """Send ``request`` (its top Via in place) in a new client transaction; events go to ``handler``."""
        txn = self.layer.send_request(request, peer, self._now())
        self._clients[txn] = handler
        metrics.child(metrics.SIP_MESSAGES_OUT, peer.transport, "request", request.method, "").inc()
        self._process(())
        return txn

    def cancel(self, invite: ClientTransaction, reason: str | None = None) -> None:
        """CANCEL an INVITE we sent (§9.1); before its first provisional response, as soon as one comes."""
        if invite.state is not State.PROCEEDING:
            if invite.state is State.CALLING:
                self._pending_cancels[invite] = reason
            return
        request = build_cancel(invite.request)
        if reason:
            request.headers.add("Reason", reason)  # RFC 3326: why the other devices stop ringing
        self._clients[self.layer.send_request(request, invite.peer, self._now())] = _ignore
        self._process(())

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        self.layer.send_stateless(message, peer)
        self._process(())

    # -- output and timers ---------------------------------------------------------------------------
    def _stream(self, peer: Peer) -> TcpTransport | None:
        return self.tls if peer.transport == "tls" else self.tcp

    def _send(self, data: bytes, peer: Peer) -> None:
        if peer.reliable:
            stream = self._stream(peer)
            if stream is None and peer.transport == "tls":
                log.warning("sip over tls without a tls listener: set ZVONOK_SIP_TLS_CERT and _KEY", peer=str(peer))
            if stream is not None and not stream.send(data, peer):
                log.info("no connection left to send on", peer=str(peer))
        elif self.udp is not None:
            self.udp.send(data, peer)

    def _trust(self, peer: Peer) -> None:
        stream = self._stream(peer) if peer.reliable else None
        if stream is not None:
            stream.trust(peer)

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _arm_timer(self) -> None:
        deadline = self.layer.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self._process(self.layer.handle_timer(self._now()))
        except Exception:  # noqa: BLE001
            metrics.child(metrics.ERRORS, "sip_timer").inc()
            log.exception("unexpected error in sip timers")
            self._arm_timer()


def _ignore(event: object) -> None:
    pass


def _tag() -> str:
    return os.urandom(6).hex()
