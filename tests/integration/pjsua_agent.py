"""The child side of the pjsua2 test phone: one PJSIP endpoint driven by JSON lines on stdin/stdout.

Run as ``python pjsua_agent.py '<config json>'`` by :mod:`pjsua_phone` (never imported by pytest: pjsua2
starts C threads and its SWIG objects must not meet pytest's garbage collection or event loop).

How it works:

* One thread owns PJSIP. ``threadCnt = 0`` and ``mainThreadOnly`` make every pjsua2 callback run on the
  main thread inside ``libHandleEvents(10)``, which the main loop calls between commands; a reader thread
  only moves stdin lines into a queue and never touches the library.
* Requests are ``{"id": n, "cmd": "...", ...args}``; each gets exactly one reply ``{"id": n, "ok": true,
  "result": ...}`` or ``{"id": n, "ok": false, "error": "..."}``. Everything the phone observes (registration,
  incoming calls, call and media state, transfer NOTIFYs, received DTMF) is streamed as
  ``{"event": "<kind>", ...}`` lines, in the order the library reported it.
* Calls are named by a handle of our own (1, 2, ...): pjsua reuses its call ids as soon as a call ends.
* Audio: the null sound device; per call an optional looping WAV player into the call and a WAV recorder
  of what the call receives. A recorder's WAV header gets its sizes when the recorder is closed, which we
  do once the call has ended; ``call_ended`` is sent when the file is complete, so it can be read then.
* The protocol owns the original stdout; fd 1 is pointed at stderr so nothing PJSIP prints can corrupt
  it. Shutdown (``quit``, stdin EOF or SIGTERM) hangs up, destroys players/recorders, calls ``libDestroy``
  and leaves with ``os._exit`` — letting the interpreter collect SWIG objects after ``libDestroy`` crashes.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pjsua2 as pj  # type: ignore[import-untyped]

STATES = {
    pj.PJSIP_INV_STATE_NULL: "NULL", pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING", pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING", pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_NONE: "none", pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold", pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}
KEEP_CODECS = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}  # what Zvonok offers; everything else is disabled


def wav_complete(path: str) -> bool:
    """True once the writer has closed the file: the RIFF size (0 while recording) matches the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        size = os.path.getsize(path)
    except OSError:
        return False
    return len(head) == 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:], "little") == size - 8


class CommandError(Exception):
    """A request the agent refuses (unknown call, bad arguments); the reply carries the message."""


def guarded(method: Callable[..., None]) -> Callable[..., None]:
    """Exceptions must not escape into a SWIG director (the C++ side aborts): report them as events."""
    def wrapper(self: Any, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:  # noqa: BLE001 - anything escaping would kill the process
            error = exc.info() if isinstance(exc, pj.Error) else repr(exc)  # pj.Error's repr says nothing
            self.agent.emit("error", where=method.__name__, error=error, trace=traceback.format_exc())
    wrapper.__name__ = method.__name__
    return wrapper


class Phone(pj.Account):  # type: ignore[misc]
    def __init__(self, agent: Agent, auto_answer: bool, hangup_on_transfer: bool) -> None:
        super().__init__()
        self.agent = agent
        self.auto_answer = auto_answer
        self.hangup_on_transfer = hangup_on_transfer

    @guarded
    def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2's name
        info = self.getInfo()
        self.agent.emit("reg_state", code=int(prm.code), reason=prm.reason, expires=int(prm.expiration),
                        active=bool(info.regIsActive))

    @guarded
    def onMwiInfo(self, prm: Any) -> None:  # noqa: N802 - a message-summary NOTIFY (subscribed or not)
        whole = prm.rdata.wholeMsg
        _head, _sep, body = whole.replace("\r\n", "\n").partition("\n\n")
        self.agent.emit("mwi", body=body, state=int(prm.state))

    @guarded
    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        call = self.agent.adopt(PhoneCall(self.agent, self, prm.callId))
        info = call.getInfo()
        self.agent.emit("incoming_call", call=call.handle, remote_uri=info.remoteUri,
                        sip_call_id=info.callIdString)
        if self.auto_answer:
            call.answer(op(180))
            call.answer(op(200))


def op(status: int = 0) -> Any:
    prm = pj.CallOpParam(True)
    if status:
        prm.statusCode = status
    return prm


class PhoneCall(pj.Call):  # type: ignore[misc]
    def __init__(self, agent: Agent, account: Phone, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.agent = agent
        self.account = account
        self.handle = 0  # set by Agent.adopt
        self.play_path: str | None = agent.play
        self.record_path: str | None = None
        self.recorder: Any = None
        self.ended = False

    @guarded
    def onCallState(self, prm: Any) -> None:  # noqa: N802
        snapshot = self.agent.snapshot(self)
        self.agent.emit("call_state", **snapshot)
        if snapshot["state"] == "DISCONNECTED":
            self.agent.ended.append(self)  # released from the main loop, outside this callback

    @guarded
    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        info = self.getInfo()
        audio = [m for m in info.media if m.type == pj.PJMEDIA_TYPE_AUDIO]
        self.agent.emit("media_state", call=self.handle,
                        media=[MEDIA_STATUS.get(m.status, str(m.status)) for m in audio])
        self.agent.connect_audio(self)

    @guarded
    def onCallTransferRequest(self, prm: Any) -> None:  # noqa: N802 - we are the transferee (REFER in)
        new = self.agent.adopt(PhoneCall(self.agent, self.account))
        prm.newCall = new  # pjsua2 makes the INVITE itself; without an instance it keeps no Call for it
        self.agent.emit("transfer_request", call=self.handle, dest=prm.dstUri, new_call=new.handle)

    @guarded
    def onCallTransferStatus(self, prm: Any) -> None:  # noqa: N802 - we are the transferor (NOTIFY in)
        code, final = int(prm.statusCode), bool(prm.finalNotify)
        self.agent.emit("transfer_status", call=self.handle, code=code, reason=prm.reason, final=final)
        prm.cont = True
        if final and 200 <= code < 300 and self.account.hangup_on_transfer and not self.ended:
            # what deployed phones (and the pjsua app) do: the transfer worked, drop our own dialog.
            # pjsua-lib itself never does, so without this the transferor's call stays up.
            prm.cont = False
            self.hangup(op())

    @guarded
    def onCallReplaceRequest(self, prm: Any) -> None:  # noqa: N802 - an INVITE with Replaces names us
        self.agent.emit("replace_request", call=self.handle, code=int(prm.statusCode))

    @guarded
    def onCallReplaced(self, prm: Any) -> None:  # noqa: N802
        new = self.agent.adopt(PhoneCall(self.agent, self.account, prm.newCallId))
        prm.newCall = new
        self.agent.emit("call_replaced", call=self.handle, new_call=new.handle)

    @guarded
    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        self.agent.emit("dtmf", call=self.handle, digit=prm.digit, method=int(prm.method))


class Agent:
    def __init__(self, config: dict[str, Any], out: Any) -> None:
        self.config = config
        self.out = out
        self.out_lock = threading.Lock()
        self.out_broken = False
        self.play: str | None = config.get("play")
        self.record_dir: str | None = config.get("record_dir")
        self.calls: dict[int, PhoneCall] = {}
        self.last: dict[int, dict[str, Any]] = {}  # snapshots, kept after the call object is released
        self.ended: list[PhoneCall] = []
        self.closing: list[tuple[PhoneCall, str | None, float]] = []  # ended, recording not yet closed
        self.players: dict[str, Any] = {}
        self.account: Phone | None = None
        self.next_handle = 1
        self.stopping = False
        self.ep = pj.Endpoint()

    # -- output -------------------------------------------------------------------------------------
    def write(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, default=str)
        with self.out_lock:
            if self.out_broken:
                return
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except OSError:  # the parent is gone: finish the shutdown quietly (stdin EOF follows)
                self.out_broken = True

    def emit(self, kind: str, **fields: Any) -> None:
        self.write({"event": kind, "t": round(time.monotonic(), 3), **fields})

    # -- library --------------------------------------------------------------------------------------
    def start(self) -> int:
        ep = self.ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 8
        cfg.uaConfig.userAgent = f"zvonok-test-pjsua/{ep.libVersion().full}"
        cfg.logConfig.level = int(self.config.get("log_level", 5))
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.filename = self.config["log"]
        cfg.medConfig.clockRate = 8000  # G.711 only: no resampling, recordings come out at 8 kHz
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.noVad = True  # keep RTP flowing in silence too (VAD would stop it)
        cfg.medConfig.ecTailLen = 0  # no echo canceller on a null device: it would only bend the tones
        ep.libInit(cfg)
        ep.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = self.config.get("bind", "127.0.0.1")
        tcfg.publicAddress = tcfg.boundAddress
        tcfg.port = int(self.config.get("sip_port", 0))  # 0: the kernel picks a free one, no race
        tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        if self.config.get("tls_ca"):  # SIP over TLS too (client side: the server's CA to verify it)
            tls = pj.TransportConfig()
            tls.boundAddress = tcfg.boundAddress
            tls.publicAddress = tcfg.boundAddress
            tls.port = 0
            tls.tlsConfig.CaListFile = self.config["tls_ca"]
            tls.tlsConfig.verifyServer = True
            ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls)
        ep.libStart()
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, KEEP_CODECS.get(codec.codecId, 0))
        return int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])

    def adopt(self, call: PhoneCall) -> PhoneCall:
        call.handle = self.next_handle
        self.next_handle += 1
        self.calls[call.handle] = call
        if self.record_dir:
            call.record_path = os.path.join(self.record_dir, f"call{call.handle}.wav")
        return call

    def snapshot(self, call: PhoneCall) -> dict[str, Any]:
        info = call.getInfo()
        snap = {"call": call.handle, "state": STATES.get(info.state, str(info.state)),
                "state_text": info.stateText, "last_status": int(info.lastStatusCode),
                "last_reason": info.lastReason, "remote_uri": info.remoteUri,
                "sip_call_id": info.callIdString, "role": "caller" if info.role == pj.PJSIP_ROLE_UAC else "callee",
                "media": [MEDIA_STATUS.get(m.status, str(m.status)) for m in info.media
                          if m.type == pj.PJMEDIA_TYPE_AUDIO]}
        self.last[call.handle] = snap
        return snap

    def connect_audio(self, call: PhoneCall) -> None:
        """(Re)connect the call's current audio port: a re-INVITE may give the stream a new bridge slot."""
        info = call.getInfo()
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.audioConfSlot < 0:
                continue
            audio = call.getAudioMedia(media.index)
            if call.play_path:
                player = self.players.get(call.play_path)
                if player is None:
                    player = pj.AudioMediaPlayer()
                    player.createPlayer(call.play_path)  # loops by default (no PJMEDIA_FILE_NO_LOOP)
                    self.players[call.play_path] = player
                player.startTransmit(audio)
            if call.record_path:
                if call.recorder is None:
                    call.recorder = pj.AudioMediaRecorder()
                    call.recorder.createRecorder(call.record_path)
                audio.startTransmit(call.recorder)

    def release_ended(self) -> None:
        """Drop ended calls; announce each once its recording is a finished WAV (or after a second)."""
        while self.ended:
            call = self.ended.pop(0)
            call.ended = True
            recording = call.record_path if call.recorder is not None else None
            # Since PJSIP 2.14 the conference bridge removes ports on its own clock tick: the WAV writer
            # closes (and fills in the header's sizes) a frame or two after the recorder is destroyed.
            call.recorder = None
            self.calls.pop(call.handle, None)
            self.closing.append((call, recording, time.monotonic() + 1.0))
        still = []
        for call, recording, deadline in self.closing:
            complete = recording is None or wav_complete(recording)
            if not complete and time.monotonic() < deadline:
                still.append((call, recording, deadline))
                continue
            snap = self.last.get(call.handle, {})
            self.emit("call_ended", call=call.handle, last_status=snap.get("last_status"),
                      last_reason=snap.get("last_reason"), recording=recording, recording_complete=complete)
        self.closing = still

    # -- commands -------------------------------------------------------------------------------------
    def call_of(self, args: dict[str, Any], key: str = "call") -> PhoneCall:
        handle = args.get(key)
        call = self.calls.get(int(handle)) if handle is not None else None
        if call is None or call.ended:
            raise CommandError(f"no live call {handle!r}")
        return call

    def cmd_ping(self, args: dict[str, Any]) -> Any:
        return "pong"

    def cmd_account(self, args: dict[str, Any]) -> Any:
        if self.account is not None:
            raise CommandError("the phone already has its account")
        user, domain = args["user"], args["domain"]
        scheme = "sips" if args.get("sips") else "sip"  # sips: every hop over TLS (RFC 5630), SRTP offered
        cfg = pj.AccountConfig()
        cfg.idUri = f"{scheme}:{user}@{domain}"
        if args.get("sips"):
            cfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
            cfg.mediaConfig.srtpSecureSignaling = 1
        if args.get("register", True):
            cfg.regConfig.registrarUri = f"{scheme}:{domain}"
            cfg.regConfig.timeoutSec = int(args.get("expires", 600))
            cfg.regConfig.retryIntervalSec = 0  # a failed registration is a test failure, not a retry
        if args.get("proxy"):
            # like baresip's outbound=: requests keep sip:<domain> but are sent to the server's address
            cfg.sipConfig.proxies.append(f"{scheme}:{args['proxy']};lr")
        if args.get("password") is not None:
            cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, args["password"]))
        # loopback only: no NAT games, every rewrite would just add a second REGISTER or re-INVITE
        cfg.natConfig.contactRewriteUse = 0
        cfg.natConfig.viaRewriteUse = 0
        cfg.natConfig.sdpNatRewriteUse = 0
        cfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        cfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        if args.get("mwi"):
            # SUBSCRIBE to the account's own message-summary (RFC 3842); NOTIFYs come to onMwiInfo
            cfg.mwiConfig.enabled = True
            cfg.mwiConfig.expirationSec = int(args.get("mwi_expires", 3600))
        cfg.mediaConfig.transportConfig.boundAddress = self.config.get("bind", "127.0.0.1")
        cfg.mediaConfig.transportConfig.port = int(self.config.get("rtp_port", 0))
        cfg.mediaConfig.transportConfig.portRange = 200
        self.account = Phone(self, bool(args.get("auto_answer", False)),
                             bool(args.get("hangup_on_transfer", False)))
        self.account.create(cfg)
        return {"uri": cfg.idUri}

    def cmd_set(self, args: dict[str, Any]) -> Any:
        """Change a phone setting: auto_answer, hangup_on_transfer (account), play (the default WAV)."""
        for key in ("auto_answer", "hangup_on_transfer"):
            if key in args:
                if self.account is None:
                    raise CommandError("no account yet")
                setattr(self.account, key, bool(args[key]))
        if "play" in args:
            self.play = args["play"]
        return None

    def cmd_call(self, args: dict[str, Any]) -> Any:
        if self.account is None:
            raise CommandError("no account yet")
        call = self.adopt(PhoneCall(self, self.account))
        try:
            call.makeCall(args["uri"], op())
        except pj.Error:
            self.calls.pop(call.handle, None)
            raise
        return {"call": call.handle}

    def cmd_answer(self, args: dict[str, Any]) -> Any:
        self.call_of(args).answer(op(int(args.get("code", 200))))

    def cmd_hangup(self, args: dict[str, Any]) -> Any:
        if args.get("call") is None:
            self.ep.hangupAllCalls()
            return None
        self.call_of(args).hangup(op(int(args.get("code", 0))))
        return None

    def cmd_hold(self, args: dict[str, Any]) -> Any:
        self.call_of(args).setHold(op())

    def cmd_unhold(self, args: dict[str, Any]) -> Any:
        prm = op()
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD  # a plain reinvite would re-offer the held (sendonly) SDP
        self.call_of(args).reinvite(prm)

    def cmd_xfer(self, args: dict[str, Any]) -> Any:
        self.call_of(args).xfer(args["dest"], op())

    def cmd_xfer_replaces(self, args: dict[str, Any]) -> Any:
        self.call_of(args).xferReplaces(self.call_of(args, "dest_call"), op())

    def cmd_dtmf(self, args: dict[str, Any]) -> Any:
        self.call_of(args).dialDtmf(args["digits"])  # RFC 4733 events in the RTP stream

    def cmd_play(self, args: dict[str, Any]) -> Any:
        call = self.call_of(args)
        call.play_path = args["path"]
        self.connect_audio(call)

    def cmd_record(self, args: dict[str, Any]) -> Any:
        call = self.call_of(args)
        if call.recorder is not None:
            raise CommandError("the call is already being recorded")
        call.record_path = args["path"]
        self.connect_audio(call)

    def cmd_calls(self, args: dict[str, Any]) -> Any:
        for call in list(self.calls.values()):
            if not call.ended:
                self.snapshot(call)
        return [self.last[h] for h in sorted(self.last)]

    def cmd_quit(self, args: dict[str, Any]) -> Any:
        self.stopping = True

    # -- main loop ------------------------------------------------------------------------------------
    def handle(self, line: str) -> None:
        try:
            request = json.loads(line)
        except ValueError:
            self.emit("error", where="request", error=f"not JSON: {line[:200]!r}")
            return
        rid = request.get("id")
        method = getattr(self, f"cmd_{request.get('cmd')}", None)
        if method is None:
            self.write({"id": rid, "ok": False, "error": f"unknown command {request.get('cmd')!r}"})
            return
        try:
            result = method(request)
        except (CommandError, KeyError, ValueError, TypeError) as exc:
            self.write({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        except pj.Error as exc:
            self.write({"id": rid, "ok": False, "error": f"pjsua: {exc.info()}"})
        else:
            self.write({"id": rid, "ok": True, "result": result})

    def run(self, requests: queue.Queue[str | None]) -> None:
        while not self.stopping:
            self.ep.libHandleEvents(10)
            self.release_ended()
            while not self.stopping:
                try:
                    line = requests.get_nowait()
                except queue.Empty:
                    break
                if line is None:  # stdin closed: the parent is gone
                    self.stopping = True
                elif line.strip():
                    self.handle(line)

    def shutdown(self, grace: float = 3.0) -> None:
        """Hang up (BYEs go out), finish recordings, unregister, destroy the library."""
        if self.calls:
            self.ep.hangupAllCalls()
        deadline = time.monotonic() + grace
        while (self.calls or self.closing) and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
            self.release_ended()
        for call in self.calls.values():
            call.recorder = None
        self.players.clear()
        if self.account is not None:
            self.account.shutdown()
        self.ep.libHandleEvents(50)
        self.ep.libDestroy()


def main() -> None:
    config = json.loads(sys.argv[1])
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the C library prints lands in the stderr log, never in the protocol
    requests: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            requests.put(line)
        requests.put(None)

    agent = Agent(config, out)
    signal.signal(signal.SIGTERM, lambda signum, frame: requests.put(None))
    code = 0
    try:
        port = agent.start()
        threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
        agent.emit("ready", sip_port=port, version=agent.ep.libVersion().full, pid=os.getpid())
        agent.run(requests)
        agent.shutdown()
    except Exception:  # noqa: BLE001 - report, then leave without the interpreter's SWIG teardown
        agent.emit("fatal", trace=traceback.format_exc())
        code = 1
    agent.emit("exit", code=code)
    os._exit(code)


if __name__ == "__main__":
    main()
