"""chatterbox-multilingual on the random checkpoint (tools/make_random_mtl_ckpt.py), on the CPU.

One engine, loaded once through upstream's ``ChatterboxMultilingualTTS.from_local``, serves
both the in-process checks and a real HTTP server in a thread. Each synthesis is bounded to a
token or two: on two cores the 10-step S3Gen decoder costs seconds per call.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
from pathlib import Path

import httpx
import pytest

from turbo_helpers import decode, serve_in_thread

FRENCH = "Bonjour à tous, ça va bien?"


@pytest.fixture(scope="module")
def server_settings(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from voxgate_server.settings import Settings

    return Settings(voices_dir=tmp_path_factory.mktemp("mtl_voices"), engines=["chatterbox-multilingual"])


@pytest.fixture(scope="module")
def engine(mtl_ckpt: dict[str, Path], server_settings):  # noqa: ANN001, ANN201
    import os

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # MTLTokenizer asks the Hub for Cangjie5_TC.json
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from voxgate_server.engines.chatterbox_multilingual.engine import ChatterboxMultilingualEngine
    from voxgate_server.engines.chatterbox_multilingual.settings import MultilingualSettings

    eng = ChatterboxMultilingualEngine(
        server_settings,
        MultilingualSettings(checkpoint_dir=mtl_ckpt["dir"], device="cpu", warmup=False,
                             max_duration_s=0.08, chunk_max_duration_s=0.08),
    )
    eng.load()
    yield eng
    eng.close()
    del eng
    gc.collect()


@pytest.fixture(scope="module")
def base_url(engine, server_settings):  # noqa: ANN001, ANN201
    from voxgate_server.app import create_app

    with serve_in_thread(create_app(server_settings, engines=[engine])) as url:
        yield url


def speech(url: str, **body) -> httpx.Response:  # noqa: ANN003
    payload = {"model": "chatterbox-multilingual", "input": FRENCH, "voice": "alloy", "response_format": "wav",
               **body}
    return httpx.post(f"{url}/v1/audio/speech", json=payload, timeout=300)


def upstream_greedy(model, text: str, language: str, steps: int):  # noqa: ANN001, ANN201
    """Upstream's own preparation and ``T3.inference`` with min_p=1 (only the most likely token
    survives: greedy), its other generate() defaults: the tokens generate() hands S3Gen, the
    text tokens, and the raw output (stop token included when it stopped)."""
    import torch
    import torch.nn.functional as F
    from chatterbox.models.s3tokenizer import drop_invalid_tokens
    from chatterbox.mtl_tts import punc_norm

    ids = model.tokenizer.text_to_tokens(punc_norm(text), language_id=language)
    ids = torch.cat([ids, ids], dim=0)
    ids = F.pad(F.pad(ids, (1, 0), value=model.t3.hp.start_text_token), (0, 1), value=model.t3.hp.stop_text_token)
    cond = dataclasses.replace(model.conds.t3, cond_prompt_speech_emb=None)
    with torch.inference_mode():
        out = model.t3.inference(t3_cond=cond, text_tokens=ids, max_new_tokens=steps, temperature=0.8,
                                 cfg_weight=0.5, repetition_penalty=2.0, min_p=1.0, top_p=1.0)
    return drop_invalid_tokens(out[0]).tolist(), ids.tolist(), out[0].tolist()


def test_loaded_through_upstreams_loader(engine) -> None:  # noqa: ANN001
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES, ChatterboxMultilingualTTS

    from voxgate_server.engines.chatterbox_multilingual.languages import LANGUAGES

    assert type(engine.model) is ChatterboxMultilingualTTS
    assert engine.model.t3.hp.is_multilingual and engine.model.conds is not None
    assert LANGUAGES == SUPPORTED_LANGUAGES  # our copy of the list is upstream's
    caps = engine.capabilities()
    assert len(caps.languages) == 23 and "fr" in caps.languages and "zh" in caps.languages
    assert "cfg_weight" in caps.generation_params and "top_k" not in caps.generation_params


def test_greedy_tokens_equal_upstreams(engine) -> None:  # noqa: ANN001
    import threading

    from voxgate_server.engines.chatterbox_turbo.conditioning import private_copy

    steps = 6
    expected, upstream_ids, upstream_raw = upstream_greedy(engine.model, FRENCH, "fr", steps)
    ids = engine.text_tokens(FRENCH, "fr")
    assert ids.tolist() == upstream_ids
    tag = engine.model.tokenizer.tokenizer.token_to_id("[fr]")
    assert ids[0, 1].item() == tag  # start-of-text, then the language tag
    params = dataclasses.replace(engine.sampling_params({}, steps), min_p=1.0)
    conds = private_copy(engine.model.conds)
    ours = engine.token_generator.generate(ids, conds.t3, params, engine.new_generator(0), threading.Event())
    assert expected, "upstream made no speech token"
    assert ours.tolist() == expected  # every token before the stop token, as upstream
    assert len(expected) == steps or 6562 in upstream_raw
    # upstream leaves its alignment hooks on the model after each call; ours removes its own
    layer = engine.model.t3.tfmr.layers[9].self_attn
    before = len(layer._forward_hooks)
    engine.token_generator.generate(ids, private_copy(engine.model.conds).t3, dataclasses.replace(params, max_tokens=1),
                                    engine.new_generator(0), threading.Event())
    assert len(layer._forward_hooks) == before


def test_models_list_the_23_languages(base_url: str) -> None:
    model = httpx.get(f"{base_url}/v1/models/chatterbox-multilingual").json()
    caps = model["capabilities"]
    assert sorted(caps["languages"]) == sorted(
        "ar da de el en es fi fr he hi it ja ko ms nl no pl pt ru sv sw tr zh".split())
    assert caps["cloning"] is True and caps["sample_rate"] == 24000


def test_french_is_spoken_as_decodable_audio(base_url: str) -> None:
    r = speech(base_url, language="fr-FR", seed=1, max_duration_s=0.04)
    assert r.status_code == 200, r.text
    samples, sr = decode(r.content)
    assert sr == 24000 and samples.size > 0
    assert float(abs(samples).max()) > 0.0


@pytest.mark.parametrize("language", ["xx", "klingon", "en-zz-zz-zz-zz-zz"])
def test_unsupported_language_is_a_400(base_url: str, language: str) -> None:
    r = speech(base_url, language=language)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "language" and err["code"] in ("unsupported_language", "invalid_value")  # the last: over the schema's 16 characters


def test_language_without_its_front_end_is_a_clear_400(base_url: str) -> None:
    """Japanese needs pykakasi, Hebrew dicta_onnx; Chinese needs Cangjie5_TC.json (the random
    checkpoint has none). Missing, the request is refused naming what is missing, not spoken."""
    cases = {"ja": "pykakasi", "he": "dicta_onnx", "zh": None}
    for language, module in cases.items():
        r = speech(base_url, language=language, max_duration_s=0.04)
        if module is not None and importlib.util.find_spec(module) is not None:
            assert r.status_code == 200, r.text
            continue
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == "language" and err["code"] == "language_unavailable"
        assert (module or "Cangjie5_TC.json").replace("_", "-") in err["message"].replace("_", "-")


def test_bad_multilingual_controls_are_400s(base_url: str) -> None:
    r = httpx.post(f"{base_url}/v1/audio/speech", json={
        "model": "chatterbox-multilingual", "input": "Hallo.", "voice": "alloy", "language": "de",
        "cfg_weight": 9}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "cfg_weight", r.text


def test_from_pretrained_reads_a_users_offline_hf_cache(mtl_ckpt: dict[str, Path], tmp_path: Path) -> None:
    """No checkpoint folder set: the engine calls upstream's from_pretrained, which finds
    ResembleAI/chatterbox in HF_HOME (a child process: huggingface_hub reads HF_HOME at import)."""
    import os
    import subprocess
    import sys

    from turbo_helpers import SERVER_SRC

    script = (
        "import torch; torch.set_num_threads(2)\n"
        "from voxgate_server.engines.chatterbox_multilingual.engine import ChatterboxMultilingualEngine\n"
        "from voxgate_server.engines.chatterbox_multilingual.settings import MultilingualSettings\n"
        "from voxgate_server.settings import Settings\n"
        f"e = ChatterboxMultilingualEngine(Settings(voices_dir={str(tmp_path / 'voices')!r}),"
        " MultilingualSettings(device='cpu', warmup=False))\n"
        "e.load(); print('LOADED', type(e.model).__name__, e.model.conds is not None)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_CHATTERBOX")}
    env.update(HF_HOME=str(mtl_ckpt["hf_home"]), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(SERVER_SRC), env.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED ChatterboxMultilingualTTS True" in result.stdout
