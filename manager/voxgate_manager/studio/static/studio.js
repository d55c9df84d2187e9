// voxgate studio: plain JavaScript against the manager's application API (/api/auth, /api/tts).
// The access token lives in memory only; the refresh token in localStorage (rotated on each use).
"use strict";

const $ = (id) => document.getElementById(id);
const REFRESH_KEY = "voxgate.refresh";
const state = { access: null, user: null, models: [], limit: 4096, jobMax: 100000, lastBlobUrl: null, job: null, chatAudio: new Map() };

// -- API -------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status; this.code = err.code;
  }
}

async function refresh() {
  const token = localStorage.getItem(REFRESH_KEY);
  if (!token) return false;
  const r = await fetch("/api/auth/refresh", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: token }) });
  if (!r.ok) { localStorage.removeItem(REFRESH_KEY); return false; }
  signedIn(await r.json());
  return true;
}

async function api(path, opts = {}, retry = true) {
  const headers = Object.assign({}, opts.headers || {});
  if (state.access) headers.Authorization = `Bearer ${state.access}`;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(path, { method: opts.method || "GET", headers, body: opts.body, signal: opts.signal });
  if (r.status === 401 && retry && await refresh()) return api(path, opts, false);
  if (r.status === 401 && retry) signedOut();
  if (!r.ok && !opts.raw) throw new ApiError(r.status, await r.json().catch(() => null));
  return r;
}
const getJSON = async (path) => (await api(path)).json();

// -- sign in ---------------------------------------------------------------------------------------

function signedIn(tokens) {
  state.access = tokens.access_token;
  state.user = tokens.user;
  localStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  // refresh a minute before the access token expires
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(refresh, Math.max(10, tokens.expires_in - 60) * 1000);
}

function signedOut() {
  state.access = null; state.user = null;
  localStorage.removeItem(REFRESH_KEY);
  $("app").hidden = true; $("account").hidden = true; $("signin").hidden = false;
  $("username").focus();
}

async function credentials(path) {
  const err = $("signin-error");
  err.textContent = "";
  const body = { username: $("username").value.trim(), password: $("password").value };
  if (!body.username || !body.password) { err.textContent = "Enter a username and a password."; return; }
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { err.textContent = (data.error && data.error.message) || `Sign-in failed (${r.status}).`; return; }
  $("password").value = "";
  signedIn(data);
  await enterApp();
}

async function enterApp() {
  $("signin").hidden = true; $("app").hidden = false; $("account").hidden = false;
  $("whoami").textContent = `${state.user.username} (${state.user.role})`;
  $("tab-admin").hidden = state.user.role !== "admin";
  // the sign-in form that had the focus is gone: the text box takes it at once, not after the lists load
  selectTab($("tab-speak"), false);
  $("text").focus();
  await loadModels();
  await Promise.all([loadVoices(), loadHistory(), loadJobs(), loadKeys()]);
  if (document.activeElement === document.body) $("text").focus();
}

// -- models and voices ------------------------------------------------------------------------------

function currentModel() { return state.models.find((m) => m.id === $("model").value) || state.models[0]; }

async function loadModels() {
  const data = await getJSON("/api/tts/models");
  state.models = data.data;
  const sel = $("model"), before = sel.value || data.default_model;
  const same = sel.options.length === state.models.length && state.models.every((m, i) => sel.options[i].value === m.id);
  if (same) state.models.forEach((m, i) => { sel.options[i].textContent = `${m.id} — ${m.state}`; }); // in place: keeps focus
  else {
    sel.replaceChildren(...state.models.map((m) => new Option(`${m.id} — ${m.state}`, m.id)));
    sel.value = state.models.some((m) => m.id === before) ? before : data.default_model;
  }
  showModel();
}

function badge(text, cls) { const li = document.createElement("li"); li.textContent = text; if (cls) li.className = cls; return li; }

function showModel() {
  const m = currentModel();
  if (!m) return;
  state.limit = m.max_characters; state.jobMax = m.job_max_characters;
  const items = [badge(m.state, `state-${m.state}`), badge(m.cost.hint), badge(m.cost.per_1k_chars_usd ? `$${m.cost.per_1k_chars_usd}/1k chars` : "no cost per use")];
  if (m.capabilities.voice_cloning) items.push(badge("clones voices"));
  if (m.capabilities.streaming) items.push(badge("streams"));
  items.push(badge(m.locale));
  $("model-badges").replaceChildren(...items);
  updateCounter();
}

async function loadVoices() {
  const m = currentModel();
  if (!m) return;
  const data = await getJSON(`/api/tts/voices?model_id=${encodeURIComponent(m.id)}`);
  const sel = $("voice"), before = sel.value;
  const opts = data.voices.filter((v) => !v.alias_of).map((v) => new Option(v.name || v.id, v.id));
  for (const alias of ["alloy", "nova", "echo"]) if (!opts.some((o) => o.value === alias)) opts.push(new Option(`${alias} (OpenAI name)`, alias));
  sel.replaceChildren(...opts);
  if ([...sel.options].some((o) => o.value === before)) sel.value = before;
  else if ([...sel.options].some((o) => o.value === "alloy")) sel.value = "alloy";
  renderLibrary(data.library, m.id);
}

function renderLibrary(items, modelId) {
  const list = $("library");
  if (!items.length) { list.replaceChildren(li("No voices uploaded yet.")); return; }
  list.replaceChildren(...items.map((v) => {
    const row = document.createElement("li");
    row.dataset.voice = v.id;
    const meta = span(`${v.name} · ${v.language || "?"}${v.seconds ? ` · ${v.seconds.toFixed(1)} s` : ""}${v.usable ? "" : " · kept (this model does not clone)"}`, "meta");
    const actions = span("", "actions");
    actions.append(button("Preview", () => preview(v.preview_url), `Preview voice ${v.name}`, "secondary"));
    if (v.deletable) actions.append(button("Delete", () => deleteVoice(v.id, modelId, v.name), `Delete voice ${v.name}`, "danger"));
    row.append(meta, actions);
    return row;
  }));
}

async function preview(url) {
  const r = await api(url);
  const player = $("voice-player");
  player.src = URL.createObjectURL(await r.blob());
  player.play().catch(() => {});
}

async function deleteVoice(id, modelId, name) {
  if (!confirm(`Delete the voice "${name}"?`)) return;
  await api(`/api/tts/voices/${encodeURIComponent(id)}?model_id=${encodeURIComponent(modelId)}`, { method: "DELETE" });
  await loadVoices();
}

// -- generate ----------------------------------------------------------------------------------------

function updateCounter() {
  const n = $("text").value.length, c = $("counter");
  c.textContent = `${n.toLocaleString()} / ${state.limit.toLocaleString()} characters`;
  c.classList.toggle("over", n > state.limit);
  $("generate").disabled = n === 0 || n > state.limit;
  const j = $("job-text").value.length, jc = $("job-counter");
  jc.textContent = `${j.toLocaleString()} / ${state.jobMax.toLocaleString()} characters`;
  jc.classList.toggle("over", j > state.jobMax);
  $("job-start").disabled = j === 0 || j > state.jobMax;
}

const MIME = { mp3: "audio/mpeg", wav: "audio/wav", opus: "audio/ogg", flac: "audio/flac", aac: "audio/aac" };

async function generate() {
  if ($("generate").disabled) return;
  const status = $("speak-status"), player = $("player"), fmt = $("format").value;
  const body = { model_id: $("model").value, text: $("text").value, voice: $("voice").value, speed: Number($("speed").value), format: fmt };
  $("generate").disabled = true;
  const m = currentModel();
  status.textContent = m && m.state !== "ready" ? `Starting ${m.id}… (it is ${m.state})` : "Generating…";
  try {
    const r = await api("/api/tts/generate", { method: "POST", json: body });
    const blob = await playStream(r, MIME[fmt], player, (bytes) => { status.textContent = `Playing while it is made… ${(bytes / 1024).toFixed(0)} KiB`; });
    if (state.lastBlobUrl) URL.revokeObjectURL(state.lastBlobUrl);
    state.lastBlobUrl = URL.createObjectURL(blob);
    const dl = $("download");
    dl.href = state.lastBlobUrl; dl.download = `voxgate.${fmt}`; dl.hidden = false;
    player.dataset.bytes = String(blob.size);
    status.textContent = `Done: ${(blob.size / 1024).toFixed(0)} KiB of ${fmt.toUpperCase()}.`;
    loadHistory(); loadModels().then(loadVoices).catch(() => {});
  } catch (e) {
    status.textContent = `Could not generate: ${e.message}`;
  } finally {
    updateCounter();
  }
}

// Streamed playback: MP3 goes through Media Source Extensions so it starts with the first bytes;
// other formats play once whole (browsers cannot append WAV/FLAC to a SourceBuffer).
async function playStream(response, mime, player, onBytes) {
  const chunks = [];
  let bytes = 0;
  const reader = response.body.getReader();
  if (mime === "audio/mpeg" && window.MediaSource && MediaSource.isTypeSupported(mime)) {
    const ms = new MediaSource();
    player.src = URL.createObjectURL(ms);
    await new Promise((ok) => ms.addEventListener("sourceopen", ok, { once: true }));
    const sb = ms.addSourceBuffer(mime);
    const appended = () => new Promise((ok) => sb.addEventListener("updateend", ok, { once: true }));
    let started = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value); bytes += value.length; onBytes(bytes);
      sb.appendBuffer(value); await appended();
      if (!started) { started = true; player.play().catch(() => {}); }
    }
    if (ms.readyState === "open") ms.endOfStream();
    player.dataset.streamed = "mse";
    return new Blob(chunks, { type: mime });
  }
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value); bytes += value.length; onBytes(bytes);
  }
  const blob = new Blob(chunks, { type: mime });
  player.src = URL.createObjectURL(blob);
  player.dataset.streamed = "whole";
  player.play().catch(() => {});
  return blob;
}

async function loadHistory() {
  const data = await getJSON("/api/tts/history");
  const list = $("history");
  if (!data.data.length) { list.replaceChildren(li("Nothing yet: generate something.")); return; }
  list.replaceChildren(...data.data.map((c) => {
    const row = document.createElement("li");
    const when = new Date(c.created_at * 1000).toLocaleTimeString();
    row.append(span(`${when} · ${c.model} · ${c.voice} · “${c.text.slice(0, 80)}${c.text.length > 80 ? "…" : ""}”`, "meta"));
    const actions = span("", "actions");
    actions.append(button("Play", () => replay(c), `Play clip from ${when}`, "secondary"),
      button("Download", () => download(c.audio_url, `${c.id}.${c.format}`), `Download clip from ${when}`, "secondary"));
    row.append(actions);
    return row;
  }));
}

async function replay(clip) {
  const r = await api(clip.audio_url);
  const player = $("player");
  player.src = URL.createObjectURL(await r.blob());
  player.play().catch(() => {});
}

async function download(url, name) {
  const r = await api(url);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await r.blob()); a.download = name;
  document.body.append(a); a.click(); a.remove();
}

// -- long jobs with server-sent events --------------------------------------------------------------

async function startJob() {
  const body = { model_id: $("model").value, text: $("job-text").value, voice: $("voice").value, speed: Number($("speed").value) };
  $("job-events").replaceChildren();
  $("job-player").hidden = true; $("job-download").hidden = true;
  try {
    const job = await (await api("/api/tts/jobs", { method: "POST", json: body })).json();
    followJob(job);
  } catch (e) { $("job-status").textContent = `Could not start: ${e.message}`; }
}

function jobLine(name, data) {
  const item = document.createElement("li");
  item.dataset.event = name;
  item.textContent = name === "chunk-progress" ? `chunk ${data.chunk + 1}/${data.chunks_total}: ${data.audio_seconds.toFixed(1)} s of audio`
    : name === "progress" ? `${data.percent}% (${data.chunks_done}/${data.chunks_total})${data.resumed ? " — resumed after a restart" : ""}`
    : name === "complete" ? `complete: ${data.audio_seconds.toFixed(1)} s` : `${name}: ${data.message || ""}`;
  $("job-events").append(item);
  item.scrollIntoView({ block: "nearest" });
}

async function followJob(job) {
  state.job = job.id;
  $("job-cancel").hidden = false;
  $("job-status").textContent = `Job ${job.id}: ${job.status}`;
  let last = 0;
  while (state.job === job.id) {
    try {
      const headers = last ? { "Last-Event-ID": String(last) } : {};
      const r = await api(job.events_url, { headers });
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          const ev = {};
          for (const line of block.split("\n")) {
            if (!line || line.startsWith(":")) continue;
            const i = line.indexOf(":");
            ev[line.slice(0, i)] = line.slice(i + 1).replace(/^ /, "");
          }
          if (!ev.event) continue;
          last = Number(ev.id);
          const data = JSON.parse(ev.data);
          jobLine(ev.event, data);
          if (ev.event === "progress") { $("job-progress").value = data.percent; $("job-status").textContent = `${data.percent}% — ${data.chunks_done} of ${data.chunks_total} chunks`; }
          if (ev.event === "complete") { await jobDone(job.id, data); return; }
          if (ev.event === "error") { $("job-status").textContent = `Job ended: ${data.message}`; $("job-cancel").hidden = true; loadJobs(); return; }
        }
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return;
    }
    await new Promise((ok) => setTimeout(ok, 1500)); // the manager restarted or the stream broke: resume from `last`
  }
}

async function jobDone(id, data) {
  $("job-progress").value = 100;
  $("job-status").textContent = `Complete: ${data.audio_seconds.toFixed(1)} s of audio.`;
  $("job-cancel").hidden = true;
  const blob = await (await api(data.result_url)).blob();
  const url = URL.createObjectURL(blob);
  const p = $("job-player"); p.src = url; p.hidden = false;
  const dl = $("job-download"); dl.href = url; dl.download = `${id}.wav`; dl.hidden = false;
  loadJobs();
}

async function cancelJob() {
  if (!state.job) return;
  await api(`/api/tts/jobs/${state.job}/cancel`, { method: "POST" });
}

async function loadJobs() {
  const data = await getJSON("/api/tts/jobs");
  const list = $("job-list");
  if (!data.data.length) { list.replaceChildren(li("No jobs yet.")); return; }
  list.replaceChildren(...data.data.map((j) => {
    const row = document.createElement("li");
    row.append(span(`${j.id} · ${j.status} · ${j.percent}% · ${j.chars_total.toLocaleString()} chars${j.resumed ? " · resumed" : ""}`, "meta"));
    const actions = span("", "actions");
    if (j.status === "complete") actions.append(button("Download", () => download(j.result_url, `${j.id}.wav`), `Download ${j.id}`, "secondary"));
    else if (j.status === "queued" || j.status === "running") actions.append(button("Follow", () => followJob(j), `Follow ${j.id}`, "secondary"));
    row.append(actions);
    return row;
  }));
}

// -- voice upload and recording ---------------------------------------------------------------------

let recorded = null, recorder = null;

async function toggleRecord() {
  const btn = $("record"), st = $("record-status");
  if (recorder) { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const parts = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => parts.push(e.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null; btn.setAttribute("aria-pressed", "false"); btn.textContent = "Record from microphone";
      recorded = await toWav(new Blob(parts));
      st.textContent = `Recorded ${(recorded.size / 1024).toFixed(0)} KiB.`;
    };
    recorder.start();
    btn.setAttribute("aria-pressed", "true"); btn.textContent = "Stop recording"; st.textContent = "Recording…";
  } catch (e) { st.textContent = `No microphone: ${e.message}`; }
}

// the voice library takes WAV/MP3/FLAC: a recording (WebM/Opus) is decoded and written as 16-bit WAV
async function toWav(blob) {
  const ctx = new AudioContext();
  const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
  const pcm = audio.getChannelData(0), rate = audio.sampleRate;
  const buf = new DataView(new ArrayBuffer(44 + pcm.length * 2));
  const w = (o, s) => [...s].forEach((c, i) => buf.setUint8(o + i, c.charCodeAt(0)));
  w(0, "RIFF"); buf.setUint32(4, 36 + pcm.length * 2, true); w(8, "WAVEfmt "); buf.setUint32(16, 16, true);
  buf.setUint16(20, 1, true); buf.setUint16(22, 1, true); buf.setUint32(24, rate, true); buf.setUint32(28, rate * 2, true);
  buf.setUint16(32, 2, true); buf.setUint16(34, 16, true); w(36, "data"); buf.setUint32(40, pcm.length * 2, true);
  pcm.forEach((x, i) => buf.setInt16(44 + i * 2, Math.max(-1, Math.min(1, x)) * 32767, true));
  ctx.close();
  return new Blob([buf], { type: "audio/wav" });
}

async function uploadVoice(ev) {
  ev.preventDefault();
  const err = $("voice-error"); err.textContent = "";
  const file = $("voice-file").files[0] || (recorded && new File([recorded], "recording.wav", { type: "audio/wav" }));
  const name = $("voice-name").value.trim();
  if (!file) { err.textContent = "Choose a file or record one."; return; }
  if (!name) { err.textContent = "Give the voice a name."; $("voice-name").focus(); return; }
  const form = new FormData();
  form.append("file", file); form.append("name", name); form.append("language", $("voice-language").value.trim() || "en");
  try {
    await api(`/api/tts/voices?model_id=${encodeURIComponent($("model").value)}`, { method: "POST", body: form });
    $("voice-form").reset(); recorded = null; $("record-status").textContent = "";
    await loadVoices();
  } catch (e) { err.textContent = e.message; }
}

// -- chat demo --------------------------------------------------------------------------------------

const REPLIES = [
  "Sure. Here is a short answer, read aloud by your own speech server.",
  "That is a good question. Local speech means nothing you say leaves this house.",
  "I can read longer replies too; they start playing before the whole answer is made.",
];
let replyIndex = 0;

function chatMessage(role, text) {
  const item = document.createElement("li");
  item.className = role;
  item.append(span(text, "text"));
  if (role === "assistant") {
    const speak = button("🔊", () => speakReply(item, text), "Read this reply aloud", "secondary speak");
    speak.setAttribute("aria-pressed", "false");
    item.prepend(speak);
  }
  $("chat-log").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function replyAudio(text) {
  // the newest reply is fetched as soon as it arrives, so the speaker icon plays at once
  if (!state.chatAudio.has(text)) {
    state.chatAudio.set(text, api("/api/tts/generate", { method: "POST", json: { model_id: $("model").value, text, voice: $("voice").value, format: "mp3" } })
      .then((r) => r.blob()));
  }
  return state.chatAudio.get(text);
}

async function speakReply(item, text) {
  const btn = item.querySelector(".speak"), player = $("chat-player");
  btn.setAttribute("aria-pressed", "true");
  try {
    player.src = URL.createObjectURL(await replyAudio(text));
    player.onended = () => btn.setAttribute("aria-pressed", "false");
    await player.play();
  } catch (e) { btn.setAttribute("aria-pressed", "false"); }
}

function sendChat(ev) {
  ev.preventDefault();
  const input = $("chat-input"), text = input.value.trim();
  if (!text) return;
  input.value = "";
  chatMessage("user", text);
  setTimeout(() => {
    const reply = REPLIES[replyIndex++ % REPLIES.length];
    const item = chatMessage("assistant", reply);
    replyAudio(reply);
    if ($("continuous").checked) speakReply(item, reply);
  }, 300);
}

// -- keys and admin ---------------------------------------------------------------------------------

async function loadKeys() {
  const data = await getJSON("/api/keys");
  $("keys").replaceChildren(...(data.data.length ? data.data.map((k) => keyRow(k, `/api/keys/${k.id}`)) : [li("No keys yet.")]));
}

function keyRow(k, revokeUrl) {
  const row = document.createElement("li");
  row.append(span(`${k.name} · ${k.prefix}… · ${k.revoked ? "revoked" : "active"}${k.last_used_at ? " · used " + new Date(k.last_used_at * 1000).toLocaleString() : ""}`, "meta"));
  if (!k.revoked) row.append(button("Revoke", async () => { await api(revokeUrl, { method: "DELETE" }); loadKeys(); if (state.user.role === "admin") loadAdmin(); }, `Revoke key ${k.name}`, "danger"));
  return row;
}

async function createKey(ev) {
  ev.preventDefault();
  const made = await (await api("/api/keys", { method: "POST", json: { name: $("key-name").value || "key" } })).json();
  const note = $("new-key");
  note.textContent = `New key (shown once, copy it now): ${made.key}`; note.hidden = false;
  $("key-name").value = "";
  loadKeys();
}

async function loadAdmin() {
  const [users, keys] = await Promise.all([getJSON("/api/admin/users"), getJSON("/api/admin/keys")]);
  $("users").replaceChildren(...users.data.map((u) => {
    const tr = document.createElement("tr");
    const td = (t) => { const c = document.createElement("td"); c.textContent = t; return c; };
    const actions = document.createElement("td");
    actions.append(button(u.role === "admin" ? "Make user" : "Make admin", () => patchUser(u.id, { role: u.role === "admin" ? "user" : "admin" }), `Change role of ${u.username}`, "secondary"),
      button(u.disabled ? "Enable" : "Disable", () => patchUser(u.id, { disabled: !u.disabled }), `${u.disabled ? "Enable" : "Disable"} ${u.username}`, "danger"));
    tr.append(td(u.username), td(u.role), td(u.disabled ? "disabled" : "active"), actions);
    return tr;
  }));
  $("all-keys").replaceChildren(...(keys.data.length ? keys.data.map((k) => keyRow(k, `/api/admin/keys/${k.id}`)) : [li("No keys.")]));
}

const LIMIT_NAMES = { chars_per_day: "characters a day", chars_per_month: "characters a month", audio_seconds_per_day: "audio seconds a day",
  audio_seconds_per_month: "audio seconds a month", requests_per_minute: "requests a minute", max_seconds: "seconds of audio per request" };

function limitText(lim) {
  const parts = Object.entries(lim).map(([k, v]) => `${Number(v).toLocaleString()} ${LIMIT_NAMES[k] || k}`);
  return parts.length ? parts.join(", ") : "no limit";
}

async function loadUsage(ev) {
  if (ev) ev.preventDefault();
  const q = new URLSearchParams();
  if ($("usage-since").value) q.set("since", $("usage-since").value);
  if ($("usage-until").value) q.set("until", $("usage-until").value);
  let data;
  try { data = await getJSON("/api/admin/usage" + (q.toString() ? "?" + q : "")); $("usage-error").textContent = ""; }
  catch (e) { $("usage-error").textContent = e.message; return; }
  const td = (t) => { const c = document.createElement("td"); c.textContent = t; return c; };
  const rows = data.usage.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.key = r.key_id; tr.dataset.model = r.model;
    tr.append(td(r.who), td(r.model), td(String(r.requests)), td(Number(r.chars).toLocaleString()),
      td(Number(r.audio_seconds || 0).toFixed(1)), td(Number(r.cost || 0).toFixed(4)), td(String(r.cache_hits || 0)));
    return tr;
  });
  if (!rows.length) { const tr = document.createElement("tr"); const c = td("No usage recorded yet."); c.colSpan = 7; tr.append(c); rows.push(tr); }
  $("usage").replaceChildren(...rows);
  const lim = data.limits;
  $("limits-source").textContent = lim.file ? "From VOXGATE_MANAGER_QUOTAS_FILE. Signed-in users count as user:<id>; an entry of that name gives a user their own limits."
    : "No quotas file is configured (VOXGATE_MANAGER_QUOTAS_FILE): there are no limits.";
  const limRows = [["Everyone (default)", lim.default], ...Object.entries(lim.entries)].map(([name, l]) => {
    const tr = document.createElement("tr"); tr.append(td(name), td(limitText(l))); return tr;
  });
  $("limits").replaceChildren(...limRows);
}

async function patchUser(id, body) {
  try { await api(`/api/admin/users/${id}`, { method: "PATCH", json: body }); $("admin-error").textContent = ""; }
  catch (e) { $("admin-error").textContent = e.message; }
  loadAdmin();
}

async function addUser(ev) {
  ev.preventDefault();
  try {
    await api("/api/admin/users", { method: "POST", json: { username: $("new-username").value, password: $("new-password").value, role: $("new-role").value } });
    $("user-form").reset(); $("admin-error").textContent = "";
  } catch (e) { $("admin-error").textContent = e.message; }
  loadAdmin();
}

// -- tabs, shortcuts, helpers -----------------------------------------------------------------------

const tabs = () => [...document.querySelectorAll("[role=tab]")].filter((t) => !t.hidden);

function selectTab(tab, focus = true) {
  for (const t of tabs()) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on)); t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (focus) tab.focus();
  if (tab.id === "tab-admin") { loadAdmin(); loadUsage(); }
  if (tab.id === "tab-jobs") loadJobs();
}

function li(text) { const x = document.createElement("li"); x.textContent = text; return x; }
function span(text, cls) { const x = document.createElement("span"); x.textContent = text; if (cls) x.className = cls; return x; }
function button(text, onClick, label, cls) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = text; if (label) b.setAttribute("aria-label", label); if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

document.addEventListener("DOMContentLoaded", async () => {
  $("signin-form").addEventListener("submit", (e) => { e.preventDefault(); credentials("/api/auth/login"); });
  $("register-button").addEventListener("click", () => credentials("/api/auth/register"));
  $("signout").addEventListener("click", async () => { await api("/api/auth/logout", { method: "POST" }, false).catch(() => {}); signedOut(); });
  $("model").addEventListener("change", () => { showModel(); loadVoices(); });
  $("text").addEventListener("input", updateCounter);
  $("job-text").addEventListener("input", updateCounter);
  $("speed").addEventListener("input", () => { $("speed-value").textContent = `${Number($("speed").value).toFixed(1)}×`; });
  $("generate").addEventListener("click", generate);
  $("voice-preview").addEventListener("click", () => {
    const lib = $("voice").value;
    replyAudio(`This is the voice ${$("voice").selectedOptions[0]?.textContent || lib}.`).then((b) => { const p = $("voice-player"); p.src = URL.createObjectURL(b); p.play().catch(() => {}); });
  });
  $("job-start").addEventListener("click", startJob);
  $("job-cancel").addEventListener("click", cancelJob);
  $("voice-form").addEventListener("submit", uploadVoice);
  $("record").addEventListener("click", toggleRecord);
  $("chat-form").addEventListener("submit", sendChat);
  $("key-form").addEventListener("submit", createKey);
  $("user-form").addEventListener("submit", addUser);
  $("usage-form").addEventListener("submit", loadUsage);
  $("show-shortcuts").addEventListener("click", () => $("shortcuts").showModal());
  for (const t of document.querySelectorAll("[role=tab]")) {
    t.addEventListener("click", () => selectTab(t));
    t.addEventListener("keydown", (e) => {
      const all = tabs(), i = all.indexOf(t);
      if (e.key === "ArrowRight") { e.preventDefault(); selectTab(all[(i + 1) % all.length]); }
      if (e.key === "ArrowLeft") { e.preventDefault(); selectTab(all[(i - 1 + all.length) % all.length]); }
    });
  }
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName);
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.id === "text") { e.preventDefault(); generate(); }
    else if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.id === "job-text") { e.preventDefault(); startJob(); }
    else if (e.key === "Escape") { for (const p of document.querySelectorAll("audio")) p.pause(); }
    else if (e.altKey && /^[1-6]$/.test(e.key) && state.user) { const t = tabs()[Number(e.key) - 1]; if (t) { e.preventDefault(); selectTab(t); } }
    else if (e.key === "?" && !typing) { $("shortcuts").showModal(); }
  });
  setInterval(() => { if (state.user && !document.hidden) loadModels().catch(() => {}); }, 5000);
  updateCounter();
  if (await refresh()) await enterApp(); else $("username").focus();
});
