"""The composition root: builds every part of one ``zvonok serve`` process, starts them in order and
stops them in reverse. One asyncio event loop (uvloop) runs the SIP service and the HTTP API together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import faulthandler
import gc
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import uvicorn

from zvonok import metrics
from zvonok.analytics import http as analytics_http
from zvonok.analytics.runner import Exports
from zvonok.api.app import create_app
from zvonok.api.limits import http_protocol
from zvonok.api.ws import events_router
from zvonok.bus import LocalBus, forward_committed
from zvonok.callcenter import http as callcenter_http
from zvonok.callcenter.desk import CenterDesk
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.cdr import http as cdr_http
from zvonok.cdr.consumer import CdrWriter
from zvonok.cdr.journal import FILE_NAME as CDR_JOURNAL
from zvonok.cdr.journal import CdrJournal
from zvonok.cdr.service import close_interrupted
from zvonok.conference import http as conference_http
from zvonok.conference.service import RoomDirectory
from zvonok.config import Settings
from zvonok.crm import http as crm_http
from zvonok.crm.events import ImapChanged
from zvonok.crm.imap import ImapPoller
from zvonok.crm.mail import KIND as CRM_MAIL
from zvonok.crm.mail import compose_crm, report_crm
from zvonok.crm.owner_routing import ClientOwnerDirectory
from zvonok.crm.reminders import TaskScheduler
from zvonok.crm.screenpop import ScreenPopper
from zvonok.fax import http as fax_http
from zvonok.fax.events import FaxQueued
from zvonok.fax.mailer import compose_fax
from zvonok.fax.service import FAX_MAIL, FaxFiles, FaxStore
from zvonok.ivr import http as ivr_http
from zvonok.ivr.prompts import IvrPrompts
from zvonok.ivr.service import MenuDirectory
from zvonok.logs import configure, get_logger
from zvonok.mail.events import MailQueued
from zvonok.mail.outbox import Outbox, SmtpServer
from zvonok.media.engine import InProcessMediaEngine
from zvonok.media.hold_music import HoldMusic
from zvonok.memdebug import MemoryReporter, limit_malloc_arenas
from zvonok.monitoring import http as monitoring_http
from zvonok.monitoring.service import monitor_audit, monitor_policy
from zvonok.natsbus import NatsBus
from zvonok.org import events as org_events
from zvonok.org.forwarding import forwarding_store
from zvonok.org.service import SipCredentials, platform_all_sip_credentials, sip_credentials
from zvonok.originates.store import OriginateLog
from zvonok.originates.store import close_interrupted as close_interrupted_originates
from zvonok.pstn import http as pstn_http
from zvonok.pstn.holds import LocalHolds, SharedHolds, delete_stale
from zvonok.pstn.loader import TariffCache, load_snapshot
from zvonok.pstn.pin_directory import EmployeePins
from zvonok.ringgroup import http as ring_group_http
from zvonok.ringgroup.service import RingGroupDirectory
from zvonok.sip.digest import Algorithm, DigestVerifier, NonceManager
from zvonok.storage.changes import ChangeFeed
from zvonok.storage.db import Database
from zvonok.telephony import features_http, hold_music_http, originate_http, presence
from zvonok.telephony.auth import Authenticator, CredentialCache
from zvonok.telephony.b2bua import CallEngine
from zvonok.telephony.call import Call
from zvonok.telephony.conference import Conferences
from zvonok.telephony.directory import Directory
from zvonok.telephony.edge import TrustedEdges
from zvonok.telephony.events import CallEvent, RegistrationChanged
from zvonok.telephony.fax_app import FaxApp
from zvonok.telephony.fax_sender import FaxSender, OutgoingFax
from zvonok.telephony.http import registrations_router
from zvonok.telephony.ivr import Ivr
from zvonok.telephony.location import BindingsChanged, GroupCommit, Location
from zvonok.telephony.monitor import Monitoring
from zvonok.telephony.mwi import Mwi
from zvonok.telephony.originate import OriginateQuota, Originator
from zvonok.telephony.park import Parking
from zvonok.telephony.pickup import Pickup
from zvonok.telephony.queue_call import QueueCalls
from zvonok.telephony.registrar import Registrar, RegistrarConfig
from zvonok.telephony.service import SipService
from zvonok.telephony.store import SqlBindingStore
from zvonok.telephony.throttle import FailureThrottle
from zvonok.telephony.trunks import Trunks
from zvonok.telephony.voicemail import Voicemail
from zvonok.transport.limits import ConnectionTable, fd_budget, raise_nofile_limit
from zvonok.voicemail import http as voicemail_http
from zvonok.voicemail.events import MailboxChanged
from zvonok.voicemail.mailer import KIND as VOICEMAIL_MAIL
from zvonok.voicemail.mailer import compose_voicemail, report_voicemail
from zvonok.voicemail.service import VoicemailFiles, VoicemailStore, mwi_counts
from zvonok.web import mount_web
from zvonok.webhooks import http as webhooks_http
from zvonok.webhooks.delivery import Dispatcher, Sender
from zvonok.webhooks.events import WebhookQueued

log = get_logger(__name__)
FAX_RESUME_DELAY = 5.0  # seconds after start-up before faxes queued before a stop are sent


@dataclass
class Runtime:
    """Everything a running server holds; tests reach in through it."""

    settings: Settings
    db: Database
    location: Location
    sip: SipService
    http: uvicorn.Server
    bus: LocalBus | NatsBus
    cdr_writer: CdrWriter
    store: SqlBindingStore
    bindings: GroupCommit
    trunks: Trunks
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    callcenter: CallCenterRuntime | None = None


def _http_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _connection_budget(settings: Settings) -> Settings:
    """Raise the descriptor limit and fit the connection caps under it beside the RTP range (issue 8:
    a connection flood must not take the descriptors calls need for media); the settings in force."""
    budget = fd_budget(raise_nofile_limit(), rtp_ports=settings.rtp_port_max - settings.rtp_port_min + 1,
                       sip_tcp=settings.sip_tcp_max_connections, http=settings.http_max_connections)
    log.info("file descriptor budget", nofile=budget.nofile, reserved=budget.reserved, rtp=budget.rtp,
             sip_tcp=budget.sip_tcp, http=budget.http, spare=budget.spare)
    if budget.rtp < settings.rtp_port_max - settings.rtp_port_min + 1:
        log.warning("the descriptor limit cannot hold the whole RTP port range: raise it (ulimit -n) or "
                    "narrow the range", usable_rtp_ports=budget.rtp)
    if (budget.sip_tcp, budget.http) != (settings.sip_tcp_max_connections, settings.http_max_connections):
        log.warning("connection caps lowered to fit the descriptor limit", sip_tcp=budget.sip_tcp, http=budget.http)
    return settings.model_copy(update={"sip_tcp_max_connections": budget.sip_tcp,
                                       "http_max_connections": budget.http})


async def build(settings: Settings) -> Runtime:
    settings = _connection_budget(settings)
    settings.prepare_data_dir()
    db = Database(settings.resolved_database_url())
    await db.upgrade()
    # changes other processes commit (the CLI, other nodes) reach this one's listeners; primed before
    # anything is loaded, so no change falls between a load and the feed (issue 8)
    changes = ChangeFeed(db)
    await changes.prime()
    bus: LocalBus | NatsBus
    if settings.bus_url:  # several nodes: call events travel between them (zvonok.natsbus, issue 14)
        # connected in the background: NATS away at start holds the node back no more than an outage
        # later would (the events for the other nodes wait, zvonok_bus_connected is 0, /healthz says so)
        bus = NatsBus.start(settings.bus_url, shared=(CallEvent,), node=settings.node_name,
                            prefix=settings.bus_prefix,
                            stream=settings.bus_prefix.replace(".", "_").replace("-", "_").upper())
    else:
        bus = LocalBus()
    # before anything new starts: the CDR journal that a crash (or a database down at the last stop) left
    # is written, then the calls a crash left open become CDRs marked "interrupted"
    cdr_writer = CdrWriter(db, bus, heartbeat=settings.cdr_heartbeat_interval,
                           journal=CdrJournal(settings.data_dir / CDR_JOURNAL))
    await cdr_writer.recover()
    # several nodes (a bus between them): the others may be running, so only calls whose heartbeat stopped
    # are leftovers (issue 14); one node alone closes every open call it finds at start, as always
    several = settings.bus_url is not None and not db.is_sqlite
    stale_after = max(15.0, 3 * (settings.cdr_heartbeat_interval or 5.0)) if several else None
    now = datetime.now(UTC)
    interrupted = await close_interrupted(
        db, now, bus=bus, stale_before=now - timedelta(seconds=stale_after) if stale_after else None)
    if interrupted:
        log.warning("closed calls interrupted by the last stop", calls=len(interrupted))
    # originated calls a stop left ringing or dialing: failed, "server_restarted" (their status survives)
    await close_interrupted_originates(
        db, now, stale_before=now - timedelta(seconds=stale_after) if stale_after else None)
    forward_committed(db, bus)
    cdr_writer.start()
    # on PostgreSQL other nodes may share the database: binding changes are announced to them, and
    # what the database holds may be theirs (zvonok.telephony.location, issue 14)
    shared = not db.is_sqlite
    store = SqlBindingStore(db, announce=shared)
    location = Location()
    location.restore(await store.load(time.time()), remote=several)  # one node alone owns all it finds

    def on_bindings_changed(event: object) -> None:
        if isinstance(event, BindingsChanged):
            location.apply_remote(event.upserts, event.deletes)

    db.add_listener(on_bindings_changed)

    def registration_changed(tenant_id: int, extension_id: int) -> None:
        now = time.time()
        bus.publish(RegistrationChanged(tenant_id=tenant_id, extension_id=extension_id,
                                        devices=len(location.lookup(tenant_id, extension_id, now)), at=now))

    location.on_change = registration_changed
    metrics.REGISTRATIONS.set(location.count)

    async def lookup(domain: str, username: str):  # type: ignore[no-untyped-def]
        async with db.session() as session:
            return await sip_credentials(session, domain, username)

    async def all_credentials():  # type: ignore[no-untyped-def]
        async with db.session() as session:
            return await platform_all_sip_credentials(session)

    credentials = CredentialCache(lookup)
    preloaded = await credentials.reload(all_credentials)
    log.info("sip credentials loaded", extensions=preloaded)

    def on_org_event(event: object) -> None:
        # one extension's change drops that extension only: a tenant with thousands of phones must not
        # fall back to the database for all of them when one is added
        if isinstance(event, (org_events.ExtensionCreated, org_events.ExtensionChanged)):
            credentials.invalidate_extension(event.extension_id, event.number, event.tenant_id)
        elif isinstance(event, org_events.ExtensionDeleted):
            credentials.invalidate_extension(event.extension_id)
        elif isinstance(event, (org_events.TenantChanged, org_events.TenantDeleted)):
            credentials.invalidate(event.tenant_id)

    db.add_listener(on_org_event)
    # nonces from before this start (another generation) are stale: the nc counts that guarded them
    # against replay are gone
    nonces = NonceManager(settings.resolved_secret_key().encode(), settings.nonce_lifetime, os.urandom)
    verifier = DigestVerifier(nonces, [Algorithm(a.value) for a in settings.digest_algorithms],
                              accept_rfc2069=settings.digest_allow_no_qop)
    auth = Authenticator(
        credentials=credentials, verifier=verifier,
        throttle=FailureThrottle(settings.auth_fail_limit, settings.auth_fail_window, settings.auth_ban_time),
        target_throttle=FailureThrottle(settings.auth_target_fail_limit, settings.auth_fail_window,
                                        settings.auth_ban_time),
        to_tag=lambda: os.urandom(6).hex(), default_domain=settings.sip_default_domain, location=location,
        edges=TrustedEdges(settings.trusted_edges),
    )
    registrar = Registrar(
        location=location, auth=auth,
        config=RegistrarConfig(settings.register_min_expires, settings.register_max_expires,
                               settings.register_default_expires, settings.register_max_contacts),
    )
    sip = SipService(settings, registrar)
    media = InProcessMediaEngine(host=settings.sip_host, port_min=settings.rtp_port_min,
                                 port_max=settings.rtp_port_max, advertised_host=settings.sip_advertised_host,
                                 socket_pool=settings.rtp_socket_pool)
    directory = Directory(db)
    db.add_listener(lambda event: directory.invalidate(getattr(event, "tenant_id", None)))
    tariff_cache = TariffCache()  # a reload rebuilds only the rate decks that changed
    # several nodes: a trunk's channels and the spending of calls in progress are counted for all of them
    # (call_holds rows on PostgreSQL, zvonok.pstn.holds); one node counts in memory
    holds = SharedHolds(db, node=f"{settings.node_name or 'node'}-{os.urandom(4).hex()}") if several else None
    trunks = Trunks(sip, loader=lambda: load_snapshot(db, tariff_cache), slots=holds)
    sip.dial_targets = trunks.dial_target  # TCP/TLS trunks: we open the connection to the carrier
    reload_pending: list[asyncio.TimerHandle] = []

    def on_outside_change(event: object) -> None:
        # trunks, numbers, routes, tariffs, policies, offices (area codes) and tenants feed the routing
        # snapshot: read it again, once for a burst of changes
        name = type(event).__name__
        entity = getattr(event, "entity", None)  # org's EntityChanged: offices (area codes), people (policies)
        if (type(event).__module__ != "zvonok.pstn.events" and not name.startswith("Tenant")
                and entity not in ("office", "department", "employee")):
            return
        if reload_pending:
            return
        def reload() -> None:
            reload_pending.clear()
            engine.spawn(trunks.reload())  # spawned by the engine: a failure is logged, the old snapshot stays

        reload_pending.append(asyncio.get_running_loop().call_later(0.2, reload))

    db.add_listener(on_outside_change)
    sip.calls = engine = CallEngine(sip=sip, media=media, auth=auth, location=location, directory=directory, bus=bus,
                           no_answer_timeout=settings.call_no_answer_timeout,
                           media_timeout=settings.media_timeout,
                           recordings_dir=(settings.data_dir / "recordings").resolve() if settings.record_calls else None,
                           record_stereo=settings.record_stereo,
                           flood=FailureThrottle(settings.invite_rate_limit, 1.0, settings.invite_flood_ban),
                           session_min_se=settings.session_min_se,
                           ringback=settings.ringback, busy_tone_seconds=settings.busy_tone_seconds,
                           trunks=trunks, srtp_policy=settings.srtp_policy)
    engine.ledger = holds if holds is not None else LocalHolds(db)
    engine.access_numbers.pins = EmployeePins(db)  # whose PIN an access-number caller keys in
    engine.forwards.store = forwarding_store(db)  # the *72/*73/*78/*79 feature codes
    rooms = RoomDirectory(db)
    db.add_listener(rooms.on_event)
    groups = RingGroupDirectory(db)
    db.add_listener(groups.on_event)
    engine.group_calls.groups = groups
    engine.client_owners = ClientOwnerDirectory(db)  # routing by owner: a client's call rings its owner first
    engine.conferences = Conferences(engine, rooms, tenant_limit=settings.conference_tenant_members,
                                     total_limit=settings.conference_total_members)
    engine.pickup = Pickup(engine)  # *8, **<ext>
    # *33<ext>: listen / whisper / barge (keys 4/5/6); tenant admins only, every session audited
    policy = monitor_policy(db)  # a supervisor with queues: their agents only (the call center's, below)
    engine.monitoring = Monitoring(engine, allowed=policy, audit=monitor_audit(db))
    engine.parking = Parking(engine, timeout=settings.park_timeout, ringback_timeout=settings.park_ringback_timeout)
    voicemail_files = VoicemailFiles((settings.data_dir / "voicemail").resolve())
    engine.voicemail = Voicemail(engine, VoicemailStore(db, voicemail_files))
    fax_store = FaxStore(db, FaxFiles((settings.data_dir / "fax").resolve()))
    engine.fax = fax_app = FaxApp(engine, fax_store)
    fax_sender = FaxSender(engine, fax_app)
    originate_log = OriginateLog(db, keep_days=settings.originate_keep_days)  # each originate's status, durably
    engine.originator = Originator(  # REST, CRM
        engine, answer_timeout=settings.originate_answer_timeout,
        quota=OriginateQuota(max_active=settings.originate_max_active, per_minute=settings.originate_per_minute),
        journal=originate_log)

    async def send_queued_fax(tenant_id: int, fax_id: int) -> None:
        job = await fax_store.job(tenant_id, fax_id)
        if job is not None:
            await fax_sender.send(job)

    def on_fax_event(event: object) -> None:
        if isinstance(event, FaxQueued):
            engine.spawn(send_queued_fax(event.tenant_id, event.fax_id))

    fax_app.on_retry = lambda tenant_id, fax_id: engine.spawn(send_queued_fax(tenant_id, fax_id))
    db.add_listener(on_fax_event)
    async def resend_after_start(jobs: list[OutgoingFax]) -> None:
        await asyncio.sleep(FAX_RESUME_DELAY)  # the trunks' snapshot is loaded and registrations are out
        for job in jobs:
            await fax_sender.send(job)

    engine.spawn(resend_after_start(await fax_store.recover()))  # queued before a stop; half-done: failed
    sip.mwi = mwi = Mwi(sip=sip, auth=auth, directory=directory, location=location, counts=mwi_counts(db),
                        unsolicited=settings.mwi_unsolicited)
    # e-mails (voicemail messages, received faxes, CRM e-mails to clients): one outbox, sent by a job, never on a call's path
    mailer = Outbox(db, SmtpServer.platform(settings))
    mailer.register(VOICEMAIL_MAIL, compose_voicemail(voicemail_files, settings.web_url),
                    report_voicemail(voicemail_files))  # a mailbox may delete a message once it is mailed
    mailer.register(FAX_MAIL, compose_fax(fax_store.files))
    mailer.register(CRM_MAIL, compose_crm, report_crm)  # the crm_messages row follows each try

    def on_mailbox_event(event: object) -> None:
        if isinstance(event, MailboxChanged):
            mwi.changed(event.tenant_id, event.extension_id)
        elif isinstance(event, MailQueued):
            mailer.wake()

    db.add_listener(on_mailbox_event)
    crm_imap = ImapPoller(db, poll=settings.crm_imap_poll)  # replies to CRM e-mails, onto the clients' timelines

    def on_crm_mail_event(event: object) -> None:
        if isinstance(event, ImapChanged):
            crm_imap.wake()

    db.add_listener(on_crm_mail_event)
    # webhooks: a durable bus subscriber queues each event of a company for its webhooks, a job posts them
    webhook_sender = Sender(db, allow_private=settings.webhooks_allow_private)
    webhook_dispatcher = Dispatcher(db, on_queued=webhook_sender.wake)
    bus.subscribe(webhook_dispatcher, where=webhook_dispatcher.wants, name="webhooks")

    def on_webhook_event(event: object) -> None:
        if isinstance(event, WebhookQueued):
            webhook_sender.wake()

    db.add_listener(on_webhook_event)
    registered = location.on_change

    sip.presence = lamps = presence.BusyLamps(
        sip=sip, auth=auth, directory=directory, location=location,
        limits=dataclasses.replace(presence.DEFAULT_LIMITS, per_source=settings.blf_subscriptions_per_device,
                                   per_tenant=settings.blf_subscriptions_per_tenant))
    bus.subscribe(lamps.on_call_event, event_types=presence.BLF_EVENTS, name="blf")  # durable: the lamps must not drift

    def registration_with_mwi(tenant_id: int, extension_id: int) -> None:
        if registered is not None:
            registered(tenant_id, extension_id)
        lamps.registration_changed(tenant_id, extension_id)  # presence open/closed
        # a phone that just registered learns of its waiting messages, from the node it registered through
        # (another node copying the binding would send the same NOTIFY again, after a mailbox query of its own)
        if settings.mwi_unsolicited and not location.applying_remote:
            mwi.changed(tenant_id, extension_id)

    location.on_change = registration_with_mwi
    menus = MenuDirectory(db, IvrPrompts(settings.data_dir / "ivr"))
    db.add_listener(menus.on_event)
    engine.ivr = Ivr(engine, menus)
    if settings.music_on_hold:
        engine.hold_music = HoldMusic(settings.data_dir / "moh")
        await asyncio.to_thread(engine.hold_music.prepare)  # the built-in track, written on first start
    metrics.watch_sizes(
        calls_active=("Calls in progress", lambda: len(engine.calls)),
        call_objects=("Call objects in memory, in progress or not: 0 again once calls end (issue 8)",
                      lambda: len(Call.live)),
        sip_transactions=("SIP transactions not yet terminated", lambda: len(sip.layer)),
        sip_dialogs=("SIP dialogs of calls in progress", lambda: len(engine.dialogs)),
        sip_invites=("INVITE server transactions of calls", lambda: len(engine.invites)),
        client_handlers=("Handlers of client transactions not yet terminated", lambda: sip.client_handlers),
        media_endpoints=("Media endpoints not yet released", lambda: media.endpoint_count),
        media_play_frames=("Frames played to callers (prompts, music, tones) since start",
                           lambda: media.playback.frames),
        media_play_late_frames=("Played frames sent more than one frame after their deadline",
                                lambda: media.playback.late),
        media_mix_ticks=("Ticks mixed by conference bridges since start", lambda: media.mix_totals().ticks),
        media_mix_late_ticks=("Mixing ticks run more than one frame after their deadline",
                              lambda: media.mix_totals().late_ticks),
        media_mix_skipped_ticks=("Mixing ticks given up after a stall longer than the catch-up limit",
                                 lambda: media.mix_totals().skipped_ticks),
        media_mix_trimmed_frames=("Received frames a mix dropped to give back delay (bursts, surplus)",
                                  lambda: media.mix_totals().trimmed_frames),
        media_mix_missing_frames=("Mixing ticks a member had no frame for (late, lost or silent)",
                                  lambda: media.mix_totals().missing_frames),
    )
    ScreenPopper(db, bus).start()  # the CRM card of a caller, to the ringing employee's websocket
    TaskScheduler(db, bus).start()  # missed call -> call-back task; task reminders and escalations
    # queues and agents; several nodes: agents' presence (agent_presence) and who has an agent (call_holds)
    # shared through PostgreSQL (zvonok.callcenter.runtime)
    callcenter = CallCenterRuntime(db, bus, claims=holds)
    await callcenter.start()
    policy.runtime = callcenter
    desk = CenterDesk(callcenter)  # the engine's queue calls (telephony/queue_call.py) go through it
    engine.queue_calls = QueueCalls(engine, desk)
    desk.attach(engine.queue_calls)
    app = create_app(settings, db, routers=[registrations_router(location), cdr_http.router, events_router(bus),
                                            pstn_http.router, conference_http.router, hold_music_http.router,
                                            features_http.router, crm_http.router, crm_http.hooks_router, voicemail_http.router,
                                            ivr_http.router, ring_group_http.router, callcenter_http.router,
                                            fax_http.router, monitoring_http.router, originate_http.router,
                                            webhooks_http.router, analytics_http.router])
    app.state.callcenter = callcenter  # agents' state (zvonok.callcenter.http)
    analytics = Exports(db, settings.data_dir / "analytics", min_interval=settings.analytics_min_interval,
                        target=settings.analytics_target, node=settings.node_name or socket.gethostname())
    app.state.analytics = analytics  # the tenants' analytics files (zvonok.analytics.http)
    app.state.conferences = engine.conferences  # live members (zvonok.conference.http)
    app.state.monitoring = engine.monitoring  # live monitoring sessions (zvonok.monitoring.http)
    app.state.originator = engine.originator  # calls placed from the PBX (zvonok.telephony.originate_http)
    app.state.parking = engine.parking  # parked calls (zvonok.telephony.features_http)
    app.state.active_calls = engine.active_calls  # calls in progress (zvonok.web.pages.calls)
    mount_web(app, location=location)  # the web console at /, after the API's routes
    app.state.trunk_status = trunks.shared_status  # GET .../trunks/{id}/status (zvonok.pstn.http)
    if isinstance(bus, NatsBus):
        app.state.bus_connected = lambda: bus.connected  # /healthz reports the bus between nodes
    http_protocol_class = http_protocol(ConnectionTable(settings.http_max_connections, settings.http_max_per_address),
                                        header_timeout=settings.http_header_timeout,
                                        body_timeout=settings.http_body_timeout)
    config = uvicorn.Config(app, loop="none", lifespan="off", log_level="warning", access_log=False,
                            http=http_protocol_class)
    http = uvicorn.Server(config)
    bindings = GroupCommit(location, store, delay=settings.register_commit_delay)
    runtime = Runtime(settings, db, location, sip, http, bus, cdr_writer, store, bindings, trunks,
                      callcenter=callcenter)
    runtime.tasks.append(asyncio.create_task(bindings.run(runtime.stopping)))
    runtime.tasks.append(asyncio.create_task(changes.run(runtime.stopping)))
    if stale_after is not None:
        runtime.tasks.append(asyncio.create_task(_close_dead_nodes_calls(db, bus, stale_after, runtime.stopping,
                                                                         callcenter)))
    if holds is not None:
        runtime.tasks.append(asyncio.create_task(holds.run(runtime.stopping)))
    runtime.tasks.append(asyncio.create_task(mailer.run(runtime.stopping)))
    runtime.tasks.append(asyncio.create_task(crm_imap.run(runtime.stopping)))
    runtime.tasks.append(asyncio.create_task(webhook_sender.run(runtime.stopping)))
    runtime.tasks.append(asyncio.create_task(originate_log.run(runtime.stopping)))
    runtime.tasks.append(asyncio.create_task(analytics.run(
        settings.analytics_nightly_hour if settings.analytics_nightly else None, runtime.stopping)))
    runtime.tasks.append(asyncio.create_task(_reload_credentials_loop(credentials, all_credentials,
                                                                      runtime.stopping)))
    return runtime


async def _close_dead_nodes_calls(db: Database, bus: LocalBus | NatsBus, stale_after: float,
                                  stopping: asyncio.Event, callcenter: CallCenterRuntime | None = None) -> None:
    """Several nodes: every ``stale_after`` seconds close, as interrupted, the open calls whose node stopped
    beating (killed): a surviving node writes their CDRs, ended at the last heartbeat; and take over the
    callback requests of the nodes gone (their row swept with their holds)."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), stale_after)
        if stopping.is_set():
            return
        try:
            now = datetime.now(UTC)
            await close_interrupted(db, now, bus=bus, stale_before=now - timedelta(seconds=stale_after))
            await close_interrupted_originates(db, now, stale_before=now - timedelta(seconds=stale_after))
            # trunk channels and spending its calls held: freed with them (zvonok.pstn.holds)
            freed = await delete_stale(db, now - timedelta(seconds=stale_after))
            if freed:
                log.warning("freed the call holds of a stopped node", holds=freed)
            if callcenter is not None:  # its callback requests: called back here (zvonok.callcenter.callbacks)
                await callcenter.take_over_callbacks()
        except Exception:  # noqa: BLE001 - the database may be away: the next round tries again
            metrics.ERRORS.labels("close_dead_calls").inc()
            log.exception("closing the calls of a stopped node failed")


async def _reload_credentials_loop(credentials: CredentialCache,
                                   fetch: Callable[[], Awaitable[Iterable[SipCredentials]]],
                                   stopping: asyncio.Event) -> None:
    """Read every extension's credentials again every ``credentials.ttl`` seconds: org events (also other
    processes', through the change feed) keep the table current, this bounds how long a missed one goes
    unseen."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), credentials.ttl)
        if stopping.is_set():
            return
        try:
            await credentials.reload(fetch)
        except Exception:  # noqa: BLE001 - keep the table we have; the next round tries again
            metrics.ERRORS.labels("credentials_reload").inc()
            log.exception("failed to reload sip credentials")


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or cancellation), then stop everything in reverse order."""
    runtime = await build(settings)
    await runtime.sip.start()
    await runtime.trunks.reload()  # after the SIP service: registrations need its address
    sock = _http_socket(settings.http_host, settings.http_port)
    http_port = sock.getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    # uvicorn also catches SIGINT/SIGTERM while it serves (signal.signal) and raises them again when it returns:
    # its task ends first, then the handler above sets ``stop``; either way the shutdown below runs once
    memory = MemoryReporter(settings.data_dir, settings.tracemalloc)  # traces from its first report on
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGUSR2, _memory_report, memory)
    http_task = asyncio.create_task(runtime.http.serve(sockets=[sock]))
    log.info("zvonok ready", sip=f"{runtime.sip.local[0]}:{runtime.sip.local[1]}",
             http=f"http://{settings.http_host}:{http_port}", database=runtime.db.url.split("://")[0])
    if ready is not None:
        ready.set()
    try:
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({stopper, http_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.info("zvonok stopping")
        runtime.http.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(http_task, 10)
        if runtime.sip.calls is not None:
            await runtime.sip.calls.stop()
        if runtime.sip.mwi is not None:
            await runtime.sip.mwi.stop()
        if runtime.sip.presence is not None:
            await runtime.sip.presence.stop()
        if runtime.callcenter is not None:
            await runtime.callcenter.stop()  # the rest of the queue log, before the database closes
        runtime.trunks.stop()  # REGISTER Expires: 0 to the carriers
        await asyncio.sleep(0.2)
        await runtime.sip.stop()
        await runtime.cdr_writer.settle()  # the last calls' CdrWritten go out before the bus closes
        await runtime.bus.close()  # drains the CDR writer: every finished call is on disk
        await runtime.cdr_writer.stop()
        runtime.stopping.set()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
        await runtime.bindings.flush()
        runtime.store.close()
        await runtime.db.dispose()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.remove_signal_handler(sig)
        log.info("zvonok stopped")


def _memory_report(memory: MemoryReporter) -> None:
    try:
        path = memory.report()
    except OSError:
        log.exception("memory report failed")
    else:
        log.info("memory report written", path=str(path))


def _tune_gc() -> None:
    """Collect the young generation less often. A loaded SIP server allocates short-lived objects at a
    high rate (every message is a few dozen), and CPython's default threshold (700) makes it run the
    collector thousands of times a second; the objects that live on are few. The price: garbage in a reference
    cycle that was still reachable at a young collection reaches the old generation and waits for a rare full
    one, so what every call creates must be freed by reference counting (no cycles: ``CallEngine._finish``;
    the gauge ``zvonok_call_objects`` falls to 0 after the calls end, issue 8)."""
    gc.collect()
    gc.freeze()  # what start-up built (modules, tables, caches) is never garbage: stop scanning it
    gc.set_threshold(50_000, 50, 100)


def run(settings: Settings) -> None:
    """Entry point of ``zvonok serve``: structured logs, uvloop, serve until a signal."""
    configure(settings.log_level, settings.log_json)
    # a crash in a C library (seen once: SIGSEGV in libsqlite3 while a test's server stopped) leaves every
    # thread's Python stack on stderr, the server's log, instead of nothing
    faulthandler.enable()
    if "MALLOC_ARENA_MAX" not in os.environ:  # the environment, read by glibc itself, wins
        limit_malloc_arenas(settings.malloc_arena_max)
    _tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
