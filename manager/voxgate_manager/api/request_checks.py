"""Client mistakes the manager answers itself, before any model is started or asked: content type,
JSON that is malformed, nested too deeply or holds lone surrogates, a missing model, and voice ids
that cannot exist. Each is a 4xx in OpenAI's envelope, never a 500 and never a broken upstream line."""

from __future__ import annotations

import json
import unicodedata
from typing import Any
from urllib.parse import quote

from voxgate_manager.errors import APIError

MAX_JSON_DEPTH = 32  # an OpenAI speech body is flat; deeper nesting is a mistake or an attack


def check_json_content_type(content_type: str | None) -> None:
    """Same rule as voxgate-server: speech bodies are application/json (or a +json type)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise APIError(415, f"Unsupported content type '{content_type or 'none'}': send application/json.",
                       code="unsupported_media_type")


def _bad_string(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or APIError 400 (invalid_json) naming what is wrong."""
    try:
        payload = json.loads(body or b"null")
    except (ValueError, RecursionError):
        raise APIError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    # iterative walk: no recursion limit to hit, and a depth bound for what follows (re-encoding)
    stack: list[tuple[Any, int, str | None]] = [(payload, 1, None)]
    while stack:
        value, depth, top = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise APIError(400, f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json")
        if isinstance(value, dict):
            for k, v in value.items():
                key_top = top if top is not None else k
                if _bad_string(k):
                    raise APIError(400, "The request body has a key that is not valid Unicode (a lone surrogate).",
                                   code="invalid_json")
                stack.append((v, depth + 1, key_top))
        elif isinstance(value, list):
            stack.extend((v, depth + 1, top) for v in value)
        elif isinstance(value, str) and _bad_string(value):
            where = f"'{top}'" if top and not _bad_string(top) else "a string"
            raise APIError(400, f"Invalid value for {where}: not valid Unicode text (a lone UTF-16 surrogate).",
                           param=top, code="invalid_value")
    return payload


def require_model(payload: dict[str, Any]) -> str:
    """OpenAI (and voxgate-server) require ``model``: a missing, null or empty one is a 400."""
    name = payload.get("model")
    if name is None or name == "":
        raise APIError(400, "You must provide a model parameter.", param="model", code="missing_required_parameter")
    if not isinstance(name, str):
        raise APIError(400, "Invalid value for 'model': expected a string.", param="model", code="invalid_value")
    return name


def impossible_voice_id(voice_id: str) -> bool:
    """Control, format or unassigned characters are in no voice id any server has (voxgate-server's
    ids are [a-z0-9_-]): answer 404 here, as the server would, without waking a model."""
    return any(unicodedata.category(ch)[0] == "C" for ch in voice_id)


def voice_path(rest: str) -> str:
    """The upstream path for ``/v1/audio/voices/{rest}``, percent-encoded: a voice id with quotes,
    spaces or non-Latin-1 characters must never break the request line sent to the model."""
    return "/v1/audio/voices" + ("/" + quote(rest, safe="/-_.~") if rest else "")


def voice_not_found(voice_id: str) -> APIError:
    shown = voice_id.encode("unicode_escape").decode("ascii")[:100]
    return APIError(404, f"No voice '{shown}' in the voice library.", param="voice_id", code="voice_not_found")
