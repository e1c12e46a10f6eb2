"""Music on hold on the settings page (tenant admins): which track callers hear, a preview, an upload of
the company's own track and the way back to the built-in one.

The same store as ``/api/v1/tenants/{id}/music-on-hold`` (:class:`~zvonok.media.hold_music.HoldMusic` in
the data directory): an upload is decoded and converted there, a file it cannot read is refused with the
reason on the form (422). The preview is what callers of the logged-in admin's company hear; there is no
company id in its URL, so no other company's track can be asked for. The upload may be larger than other
form bodies: its BodyLimit entry (``POST /settings/music``) is in :mod:`zvonok.api.app`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, File, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.config import Settings
from zvonok.media.hold_music import MAX_UPLOAD, RATE, HoldMusic, HoldMusicError
from zvonok.web.auth import TenantAdminUser
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for
from zvonok.web.routing import page_router

router = page_router()
ACCEPT = ".wav,.mp3,.flac,.ogg,audio/wav,audio/mpeg,audio/flac,audio/ogg"

# HoldMusicError's reasons (English, technical) as the form says them
_REASONS = (
    ("not an audio file", N_("Not an audio file this server can read: upload a WAV, MP3, FLAC or Ogg Vorbis file.")),
    ("empty", N_("The file is empty.")),
    ("shorter", N_("The track is shorter than half a second.")),
    ("silent", N_("The track is silent.")),
    ("larger", N_("The file is larger than %(mib)s MiB.")),
)


def store_of(request: Request) -> HoldMusic:
    settings: Settings = request.app.state.settings
    return HoldMusic(settings.data_dir / "moh")


def music_context(request: Request, tenant_id: int) -> dict[str, Any]:
    """What the settings page shows about the company's music on hold."""
    music = store_of(request)
    own = music.seconds(tenant_id)
    path = music.tenant_path(tenant_id) if own is not None else music.default_path
    if own is None:
        music.prepare()  # once per data directory: a short synthesized file
    stat = path.stat()
    return {"custom": own is not None, "seconds": round(max(0, stat.st_size - 44) / (2 * RATE), 1),
            "version": f"{stat.st_mtime_ns:x}", "accept": ACCEPT, "max_mib": MAX_UPLOAD // (1024 * 1024)}


def _reason(request: Request, exc: HoldMusicError) -> str:
    _ = gettext_for(request)
    text = str(exc)
    for key, message in _REASONS:
        if key in text:
            return str(_(message)) % {"mib": MAX_UPLOAD // (1024 * 1024)} if "%(" in message else str(_(message))
    return str(_("The file cannot be used as music on hold."))


async def _settings_page(request: Request, session: AsyncSession, tenant_id: int, **music: Any) -> Response:
    from zvonok.web.pages import settings as settings_page  # the page this section is part of

    return await settings_page.render_settings(request, session, tenant_id, **music)


@router.post("/settings/music")
async def upload_music(request: Request, user: TenantAdminUser,
                       session: Annotated[AsyncSession, Depends(get_session)],
                       track: Annotated[UploadFile | None, File()] = None) -> Response:
    _ = gettext_for(request)
    data = await track.read(MAX_UPLOAD + 1) if track is not None else b""
    try:
        if track is None or not track.filename:
            raise HoldMusicError("the file is empty")
        await asyncio.to_thread(store_of(request).store, user.tenant, data)
    except HoldMusicError as exc:
        return await _settings_page(request, session, user.tenant, music_error=_reason(request, exc),
                                    status_code=422)
    return RedirectResponse("/settings?music=uploaded#hold-music", status_code=303)


@router.post("/settings/music/remove")
async def remove_music(request: Request, user: TenantAdminUser) -> Response:
    await asyncio.to_thread(store_of(request).remove, user.tenant)
    return RedirectResponse("/settings?music=builtin#hold-music", status_code=303)


@router.get("/settings/music/audio", response_class=FileResponse)
async def music_audio(request: Request, user: TenantAdminUser) -> FileResponse:
    """What a held caller of this company hears, as WAV (the page's <audio> preview)."""
    source = await asyncio.to_thread(store_of(request).source_for, user.tenant)
    return FileResponse(source.path, media_type="audio/wav", headers={"Cache-Control": "private, no-cache"})
