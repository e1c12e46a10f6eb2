"""Keys sent in SIP INFO (desk phones set to "SIP INFO" DTMF) handed to the call's application.

The body is parsed by :func:`zvonok.sip.dtmf_info.parse_dtmf_info`; a key is given to the media engine,
which reports it through the endpoint's ``on_dtmf`` callback exactly as an RFC 4733 key: the access
number, conference PIN prompts and IVR menus hear both kinds the same way, and none of them needs to know.
"""

from __future__ import annotations

from zvonok.media.interface import Endpoint, MediaEngine
from zvonok.sip.dtmf_info import parse_dtmf_info
from zvonok.sip.message import Request


async def info_dtmf(media: MediaEngine, endpoint: Endpoint, request: Request) -> None:
    found = parse_dtmf_info(request.headers.get("content-type") or "", request.body)
    if found is not None:
        await media.inject_dtmf(endpoint, found.digit, found.duration_ms)
