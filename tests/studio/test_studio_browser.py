"""The studio in real Chromium (Debian's, driven by Playwright; no browser download) against a
real manager with real Piper: sign in, generate and hear it, upload a voice, a job to completion,
the chat speaker icon, a keyboard-only pass, axe-core, and screenshots at desktop and phone width."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright import sync_api

from audio_check import decode
from piper_manager import sign_up, start_manager, tone_wav

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
AXE = Path(os.environ.get("VOXGATE_AXE_JS", ROOT / ".cache/node/node_modules/axe-core/axe.min.js"))
ARTIFACTS = Path(os.environ.get("VOXGATE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "studio"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
PASSWORD = "browser password 1"


@pytest.fixture(scope="module")
def mgr(tmp_path_factory):
    assert CHROMIUM, "Debian's chromium is missing: scripts/test.sh installs it (apt-get install chromium)"
    assert AXE.is_file(), f"axe-core is missing at {AXE}: scripts/test.sh installs it from npm"
    m = start_manager(tmp_path_factory.mktemp("studio-browser"))
    sign_up(m.url, "walt", PASSWORD)
    sign_up(m.url, "kbd", PASSWORD)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, mgr):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    pg = ctx.new_page()
    pg.csp_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda msg: "Content Security Policy" in msg.text and pg.csp_errors.append(msg.text))
    pg.set_default_timeout(120_000)
    yield pg
    ctx.close()


def sign_in(page, mgr, user="walt"):
    page.goto(mgr.url + "/")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#signin-button")
    page.wait_for_selector("#app:not([hidden])")


def arm_ended(page, player: str) -> None:
    """Note when the <audio> element reaches its end (armed before playback starts)."""
    page.evaluate("""(id) => { window.__ended = window.__ended || {}; window.__ended[id] = false;
        document.getElementById(id).addEventListener('ended', () => { window.__ended[id] = true; }, {once: true}); }""", player)


def wait_ended(page, player: str, timeout_ms: int = 90_000) -> None:
    try:
        page.wait_for_function("(id) => window.__ended[id] === true", arg=player, timeout=timeout_ms)
    except sync_api.TimeoutError:
        st = page.evaluate("""(id) => { const p = document.getElementById(id);
            return {src: p.src, ready: p.readyState, paused: p.paused, t: p.currentTime, d: p.duration, err: p.error && p.error.message,
                    status: document.getElementById('speak-status').textContent}; }""", player)
        raise AssertionError(f"<audio id={player}> did not reach 'ended': {st}") from None


def downloaded(page, selector: str) -> bytes:
    """The bytes behind a download link, fetched the way a user gets them (a click)."""
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


def test_sign_in_generate_and_hear_it(page, mgr):
    resp = page.goto(mgr.url + "/")
    csp = resp.headers["content-security-policy"]
    assert "media-src 'self' blob:" in csp and "default-src 'none'" in csp and "http" not in csp
    sign_in(page, mgr)
    assert page.text_content("#whoami") == "walt (user)"
    assert page.locator("#tab-admin").is_hidden()
    words = "Hello from the studio. The audio element should play this to the end."
    page.fill("#text", words)
    assert page.text_content("#counter") == f"{len(words)} / 4,096 characters"
    arm_ended(page, "player")
    page.click("#generate")
    wait_ended(page, "player")  # the <audio> element played to its end
    page.wait_for_selector("#download:not([hidden])")
    assert page.get_attribute("#player", "data-streamed") == "mse"  # MP3 played through MediaSource as it came
    audio = decode(downloaded(page, "#download"), "mp3")
    assert audio.duration > 2.0 and float((audio.samples ** 2).mean()) ** 0.5 > 0.01
    page.wait_for_selector("#history li button")
    assert "Hello from the studio" in page.text_content("#history")
    assert "ready" in page.text_content("#model-badges")
    # over the limit: the counter says so and Generate is off
    page.fill("#text", "x" * 4097)
    assert page.locator("#counter.over").is_visible() and page.is_disabled("#generate")
    assert page.csp_errors == []


def test_upload_a_voice_and_see_it_listed(page, mgr, tmp_path):
    sign_in(page, mgr)
    clip = tmp_path / "hum.wav"
    clip.write_bytes(tone_wav())
    page.click("#tab-voices")
    page.set_input_files("#voice-file", str(clip))
    page.fill("#voice-name", "Browser Hum")
    page.click("#voice-upload")
    row = page.wait_for_selector("#library li[data-voice='browser-hum']")
    assert "Browser Hum" in row.text_content()
    assert page.locator("#library li[data-voice='browser-hum'] button[aria-label='Delete voice Browser Hum']").is_visible()


def test_job_with_progress_to_completion(page, mgr):
    sign_in(page, mgr)
    page.click("#tab-jobs")
    text = " ".join(f"Sentence {i} of a short chapter, read by a background job." for i in range(40))
    page.fill("#job-text", text)
    page.click("#job-start")
    page.wait_for_function("() => document.getElementById('job-status').textContent.startsWith('Complete')", timeout=240_000)
    events = page.eval_on_selector_all("#job-events li", "els => els.map(e => e.dataset.event)")
    assert events[0] == "progress" and events[-1] == "complete" and "chunk-progress" in events
    assert page.get_attribute("#job-progress", "value") == "100"
    page.wait_for_selector("#job-player:not([hidden])")
    assert decode(downloaded(page, "#job-download"), "wav").duration > 10


def test_chat_speaker_icon_reads_the_reply(page, mgr):
    sign_in(page, mgr)
    page.click("#tab-chat")
    page.fill("#chat-input", "Hi there")
    page.press("#chat-input", "Enter")
    speaker = page.wait_for_selector("#chat-log li.assistant button[aria-label='Read this reply aloud']")
    arm_ended(page, "chat-player")
    speaker.click()
    wait_ended(page, "chat-player")
    assert speaker.get_attribute("aria-pressed") == "false"


def _focused(page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.getAttribute('aria-label') || document.activeElement.tagName")


def test_keyboard_only_main_flow(page, mgr):
    page.goto(mgr.url + "/")
    assert _focused(page) == "username"  # the page starts in the sign-in form
    page.keyboard.type("kbd")
    page.keyboard.press("Tab")
    assert _focused(page) == "password"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
    assert float(outline.rstrip("px")) >= 2  # focus is visible
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#app:not([hidden])")
    assert _focused(page) == "text"
    page.keyboard.press("Control+a")
    page.keyboard.type("Typed and generated with the keyboard only.")
    arm_ended(page, "player")
    page.keyboard.press("Control+Enter")
    wait_ended(page, "player")
    # sections by keyboard: Alt+2 opens Long text, arrows move along the tabs
    page.keyboard.press("Alt+2")
    assert page.locator("#panel-jobs").is_visible() and _focused(page) == "tab-jobs"
    page.keyboard.press("ArrowRight")
    assert page.locator("#panel-voices").is_visible() and _focused(page) == "tab-voices"
    # Tab walks into the panel's form
    page.keyboard.press("Tab")
    assert _focused(page) == "voice-file"
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Tab")
    assert _focused(page) == "continuous"
    page.keyboard.press("Space")
    assert page.is_checked("#continuous")


def _axe(page) -> list[dict]:
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def test_accessibility_axe_and_screenshots(browser, mgr):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 390, "height": 844})):
        ctx = browser.new_context(viewport=viewport, bypass_csp=True)  # only so axe can be injected
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(mgr.url + "/")
        pg.wait_for_selector("#signin-form")
        bad = _axe(pg)
        assert bad == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in bad]
        pg.screenshot(path=str(ARTIFACTS / f"signin-{name}.png"), full_page=True)
        sign_in(pg, mgr)
        pg.wait_for_selector("#model option", state="attached")
        for tab in ("speak", "jobs", "voices", "chat", "keys"):
            pg.click(f"#tab-{tab}")
            bad = _axe(pg)
            assert bad == [], (tab, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in bad])
        pg.click("#tab-speak")
        pg.screenshot(path=str(ARTIFACTS / f"studio-{name}.png"), full_page=True)
        if name == "phone":  # nothing wider than the screen
            assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        ctx.close()
    assert (ARTIFACTS / "studio-phone.png").stat().st_size > 5000


def test_admin_pages_reload_keeps_the_session_and_sign_out_ends_it(page, mgr):
    import subprocess
    import sys

    # the manager's own environment: its accounts database is where VOXGATE_MANAGER_APP_DIR says
    env = {**mgr.env, "PYTHONPATH": f"{ROOT / 'manager'}:{ROOT / 'tts-inference-server'}",
           "VOXGATE_MANAGER_DATA_DIR": str(mgr.tmp / "data")}
    made = subprocess.run([sys.executable, "-m", "voxgate_manager.cli", "create-admin", "boss", "--password-stdin"],
                          input=PASSWORD + "\n", text=True, capture_output=True, env=env, timeout=60)
    assert made.returncode == 0, made.stderr
    sign_in(page, mgr, "boss")
    page.click("#tab-admin")
    page.wait_for_selector("#users tr")
    names = page.eval_on_selector_all("#users tr td:first-child", "els => els.map(e => e.textContent)")
    assert {"boss", "walt", "kbd"} <= set(names)
    # the usage page: a generation made just now shows as the user's row, with the limits beside it
    import httpx

    walt = httpx.post(f"{mgr.url}/api/auth/login", json={"username": "walt", "password": PASSWORD}, timeout=30).json()
    walt_id = httpx.get(f"{mgr.url}/api/auth/me", headers={"Authorization": f"Bearer {walt['access_token']}"}).json()["id"]
    said = "Usage page check, counted for walt."
    gen = httpx.post(f"{mgr.url}/api/tts/generate", headers={"Authorization": f"Bearer {walt['access_token']}"}, timeout=120,
                     json={"model_id": "piper", "text": said, "voice": "alloy", "format": "wav", "speed": 1.07})
    assert gen.status_code == 200, gen.text
    page.click("#usage-form button[type=submit]")
    row = f"#usage tr[data-key='user:{walt_id}'][data-model='piper']"
    page.wait_for_selector(row)
    cells = page.eval_on_selector_all(row + " td", "els => els.map(e => e.textContent)")
    assert cells[0] == "walt" and cells[1] == "piper" and int(cells[2]) >= 1 and int(cells[3].replace(",", "")) >= len(said)
    assert float(cells[4]) > 0  # audio seconds were measured
    assert "no limit" in page.text_content("#limits") and "No quotas file" in page.text_content("#limits-source")
    # a key made on the keys page shows up in the admin's list of everyone's keys
    page.click("#tab-keys")
    page.fill("#key-name", "studio-test")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#new-key:not([hidden])")
    assert "vg-" in page.text_content("#new-key")
    page.click("#tab-admin")
    page.wait_for_function("() => document.getElementById('all-keys').textContent.includes('studio-test')")
    # a reload keeps the session (the rotated refresh token); signing out ends it on the server
    page.reload()
    page.wait_for_selector("#app:not([hidden])")
    refresh = page.evaluate("localStorage.getItem('voxgate.refresh')")
    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    import httpx

    r = httpx.post(f"{mgr.url}/api/auth/refresh", json={"refresh_token": refresh})
    assert r.status_code == 401
