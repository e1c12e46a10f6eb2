"""REST routes of a company's music on hold: ``/api/v1/tenants/{tenant_id}/music-on-hold``.

``GET`` says whether the company has its own track (and its length); ``PUT`` uploads one as the raw
request body (WAV, MP3, FLAC or Ogg Vorbis; converted to 8 kHz mono on upload; 422 for anything else);
``DELETE`` goes back to the built-in track; ``GET .../audio`` returns what callers hear, as WAV. All for
the tenant's admin. The tracks are files in the data directory (:mod:`zvonok.media.hold_music`).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel

from zvonok.api.auth import TenantAdmin
from zvonok.config import Settings
from zvonok.media.hold_music import HoldMusic, HoldMusicError

router = APIRouter(prefix="/api/v1", tags=["music on hold"])
# the audio upload may be larger than other bodies: zvonok.api.limits.BodyLimit gives it http_max_upload
UPLOAD = ("PUT", "/api/v1/tenants/[^/]+/music-on-hold")


class HoldMusicOut(BaseModel):
    custom: bool  # False: callers hear the built-in track
    seconds: float | None  # the company's own track's length


def _store(request: Request) -> HoldMusic:
    settings: Settings = request.app.state.settings
    return HoldMusic(settings.data_dir / "moh")


def _out(music: HoldMusic, tenant_id: int) -> HoldMusicOut:
    seconds = music.seconds(tenant_id)
    return HoldMusicOut(custom=seconds is not None, seconds=round(seconds, 2) if seconds is not None else None)


@router.get("/tenants/{tenant_id}/music-on-hold", response_model=HoldMusicOut)
async def get_hold_music(tenant_id: int, _: TenantAdmin, request: Request) -> object:
    return _out(_store(request), tenant_id)


@router.put("/tenants/{tenant_id}/music-on-hold", response_model=HoldMusicOut,
            responses={413: {"description": "Larger than the upload limit"},
                       422: {"description": "Not an audio file the server can read"}})
async def put_hold_music(tenant_id: int, _: TenantAdmin, request: Request) -> object:
    data = await request.body()  # bounded by the BodyLimit middleware (413)
    music = _store(request)
    try:
        await asyncio.to_thread(music.store, tenant_id, data)
    except HoldMusicError as exc:
        raise HTTPException(422, str(exc)) from None
    return _out(music, tenant_id)


@router.delete("/tenants/{tenant_id}/music-on-hold", status_code=204)
async def delete_hold_music(tenant_id: int, _: TenantAdmin, request: Request) -> Response:
    await asyncio.to_thread(_store(request).remove, tenant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tenants/{tenant_id}/music-on-hold/audio", response_class=FileResponse)
async def get_hold_music_audio(tenant_id: int, _: TenantAdmin, request: Request) -> FileResponse:
    source = await asyncio.to_thread(_store(request).source_for, tenant_id)
    return FileResponse(source.path, media_type="audio/wav")
