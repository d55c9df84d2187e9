"""Opening an admitted request's answer on a model's server, with the manager's fault handling.

Shared by the plain proxy (voice uploads, app.py) and the speech path through fallback chains
(routing/gateway.py), so both see a hung or dead model the same way (issue 17's faults):

- while the answer's head is awaited, the model's liveness monitor may abort the request (a
  SIGSTOPped server accepts and never answers): the client gets 502 ``upstream_unresponsive``;
- a model the manager thinks ready that cannot be connected to is health-checked at once; when it
  is dead (and ours to restart), ``ModelDied`` says the request may go through the lifecycle once
  more, which starts it again; nothing of the request was sent;
- any other 502 from a model thought ready schedules a health check.

The admission is not released here: the caller, who acquired it, releases it on any exception.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import Request

from voxgate_manager.errors import APIError
from voxgate_manager.transport.proxy import StreamedProxyResponse, UpstreamUnreachable, open_upstream, raw_upstream_headers

if TYPE_CHECKING:
    from voxgate_manager.lifecycle.controller import ModelController
    from voxgate_manager.manager import Manager


class ModelDied(UpstreamUnreachable):
    """The model could not be reached and its health check declared it dead: retry the request once."""


async def open_admitted(manager: "Manager", request: Request, ctl: "ModelController", target: str,
                        body: bytes, method: str = "POST") -> StreamedProxyResponse:
    auth = b"Bearer " + ctl.spec.api_key.encode() if ctl.spec.api_key else None
    task = asyncio.current_task()
    aborted: list[str] = []

    def abort(why: str) -> None:
        aborted.append(why)
        if task is not None:
            task.cancel()

    ctl.aborts.add(abort)
    try:
        upstream = await open_upstream(manager.h1, method, ctl.runtime.base_url, target,
                                       headers=raw_upstream_headers(request.scope["headers"], auth), content=body,
                                       model=ctl.id)
    except UpstreamUnreachable as exc:
        ctl.aborts.discard(abort)
        if await ctl.liveness.check_now() and ctl.runtime.kind != "remote":
            raise ModelDied(exc.status, exc.message, code=exc.code) from None
        raise
    except asyncio.CancelledError:
        if not aborted or task is None:
            raise
        task.uncancel()
        raise APIError(502, f"model {ctl.id!r} stopped answering: {aborted[0]}", code="upstream_unresponsive") from None
    except APIError:
        asyncio.ensure_future(ctl.liveness.check_now())  # a 502 from a model thought ready: is it alive?
        raise
    finally:
        ctl.aborts.discard(abort)
    return StreamedProxyResponse(upstream, ctl.release, ctl.id, ctl.aborts)
