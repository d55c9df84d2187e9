"""Every client mistake gets OpenAI's envelope, the right status and SDK exception, and no harm."""

from __future__ import annotations

import httpx
import openai
import pytest


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def _create(client, **overrides):
    kwargs = {"model": "tts-1", "voice": "alloy", "input": "Hello there."}
    kwargs.update(overrides)
    return client.audio.speech.create(**kwargs)


@pytest.mark.parametrize(
    ("overrides", "exc", "param"),
    [
        ({"input": ""}, openai.BadRequestError, "input"),
        ({"input": "x" * 4097}, openai.BadRequestError, "input"),
        ({"model": "no-such-model"}, openai.NotFoundError, "model"),
        ({"voice": "no-such-voice"}, openai.BadRequestError, "voice"),
        ({"response_format": "ogg"}, openai.BadRequestError, "response_format"),
        ({"speed": 0.1}, openai.BadRequestError, "speed"),
        ({"speed": 4.5}, openai.BadRequestError, "speed"),
        ({"stream_format": "websocket"}, openai.BadRequestError, "stream_format"),
    ],
)
def test_sdk_raises_the_right_exception(client, overrides, exc, param):
    with pytest.raises(exc) as info:
        _create(client, **overrides)
    err = info.value.body
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and err["message"]


def test_missing_field_names_it(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", json={"model": "tts-1", "input": "Hi."})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "voice"


def test_malformed_json(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", content=b'{"model": "tts-1", "input": ',
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_wrong_content_type(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", content=b"model=tts-1&input=hi",
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["error"]["type"] == "invalid_request_error"


def test_oversized_body(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "x" * 200_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_oversized_chunked_body_without_length(server):
    def body():
        yield b'{"model": "tts-1", "voice": "alloy", "input": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}'

    r = httpx.post(f"{server.url}/v1/audio/speech", content=body(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_wrong_types_are_400_not_422(server):
    for body in ({"model": "tts-1", "voice": 5, "input": "hi"}, {"model": "tts-1", "voice": "alloy", "input": ["hi"]},
                 [1, 2, 3], {"model": "tts-1", "voice": "alloy", "input": "hi", "speed": "fast"}):
        r = httpx.post(f"{server.url}/v1/audio/speech", json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_unknown_route_and_method_use_envelope(server):
    r = httpx.get(f"{server.url}/v1/nope")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(f"{server.url}/v1/audio/speech")
    assert r.status_code == 405 and "error" in r.json()


def test_server_still_works_after_mistakes(client):
    assert len(_create(client, response_format="wav").content) > 1000


def test_api_keys(server_factory):
    srv = server_factory({"VOXGATE_API_KEYS": "k1,k2"})
    assert httpx.get(f"{srv.url}/health").status_code == 200
    bad = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert info.value.body["code"] == "invalid_api_key"
    assert httpx.get(f"{srv.url}/v1/models").status_code == 401
    assert httpx.get(f"{srv.url}/metrics").status_code == 401
    good = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="k2", max_retries=0)
    assert len(good.audio.speech.create(model="tts-1", voice="alloy", input="Hi.").content) > 100
    assert good.models.list().data
