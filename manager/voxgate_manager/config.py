"""models.json: the registry of models the manager serves, validated at start-up and on reload.

A bad file raises ConfigError whose message names the offending field by its JSON path
(``models[1].runtime.port``), so the operator knows what to fix without reading a traceback.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voxgate_manager.providers.config import BaseUrl, ElevenLabsProvider, OpenAICompatibleProvider, OpenAIProvider, Price
from voxgate_manager.voices import DeclaredVoice, VoicePreset


class ConfigError(ValueError):
    """models.json is missing, not JSON, or breaks the schema."""


class _Strict(BaseModel):
    # strict: `"port": true` is not port 1, `"port": "18810"` is not a number, Infinity/NaN are not
    # timeouts (an integer is still accepted where a float is expected)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Volume(_Strict):
    source: str  # host path or named volume
    target: str  # path inside the container
    read_only: bool = False


class GpuRequest(_Strict):
    """Docker device request: ``count`` -1 means all GPUs; or name ``device_ids``."""

    count: int = -1
    device_ids: list[str] | None = None
    driver: str = "nvidia"
    capabilities: list[str] = Field(default_factory=lambda: ["gpu"])


class DockerRuntime(_Strict):
    type: Literal["docker"]
    image: str
    container_name: str | None = None  # default: voxgate-<model id>
    host: str = "127.0.0.1"  # host address the port is published on
    port: int = Field(ge=1, le=65535)  # host port
    container_port: int = Field(default=8000, ge=1, le=65535)
    environment: dict[str, str] = Field(default_factory=dict)
    volumes: list[Volume] = Field(default_factory=list)
    gpus: GpuRequest | None = None
    shm_size: str | None = None
    # the container's memory cap (Docker's format: "512m", "4g"); swap is held to the same, so a
    # model that outgrows it is OOM-killed (and reported so) rather than thrashing the host
    mem_limit: str | None = Field(default=None, pattern=r"^[0-9]+[bkmgBKMG]?$")
    stop_timeout_s: float = Field(default=10.0, ge=0)  # SIGTERM, then SIGKILL after this


class ProcessRuntime(_Strict):
    type: Literal["process"]
    # argv; "{python}" is the manager's interpreter, "{host}"/"{port}" the values below
    command: list[str] = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    environment: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    stop_timeout_s: float = Field(default=10.0, ge=0)


class RemoteRuntime(_Strict):
    type: Literal["remote"]
    base_url: BaseUrl
    health_interval_s: float = Field(default=5.0, gt=0)


Runtime = Annotated[DockerRuntime | ProcessRuntime | RemoteRuntime | OpenAIProvider | OpenAICompatibleProvider
                    | ElevenLabsProvider, Field(discriminator="type")]


class Readiness(_Strict):
    """When a model can synthesize: status code, and optionally a JSON field's value."""

    path: str = "/health"
    expect_status: int = 200
    json_field: str | None = None  # dotted path, e.g. "status" or "engines.piper.state"
    json_value: Any = None
    timeout_s: float = Field(default=2.0, gt=0)  # per probe
    initial_interval_s: float = Field(default=0.05, gt=0)
    max_interval_s: float = Field(default=0.5, gt=0)


class Warmup(_Strict):
    """One request run before the first held request is released (pays first-call costs)."""

    path: str = "/v1/audio/speech"
    method: Literal["POST", "GET"] = "POST"
    body: dict[str, Any] = Field(default_factory=dict)
    expect_status: int = 200
    timeout_s: float = Field(default=120.0, gt=0)


DEFAULT_CONCURRENCY = 2
class Liveness(_Strict):
    """While requests are in flight on a ready model, its readiness path is asked every ``interval_s``;
    ``failures`` probes in a row with no answer within ``timeout_s`` mark it hung (a SIGSTOPped or
    wedged server): its requests get a clean error and it is restarted. Any HTTP answer counts as alive.
    A hung model is detected within failures x (interval_s + timeout_s) of the hang (default 14 s)."""

    interval_s: float = Field(default=2.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    failures: int = Field(default=2, ge=1)


class ModelSpec(_Strict):
    id: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    upstream_model: str | None = None  # the body's "model" as the server knows it (default: id)
    api_key: str | None = None  # bearer key the upstream expects, if it has keys set
    runtime: Runtime
    readiness: Readiness = Field(default_factory=Readiness)
    start_timeout_s: float = Field(default=300.0, gt=0)
    hold_max_s: float = Field(default=120.0, gt=0)
    idle_timeout_s: float = Field(default=600.0, gt=0)
    drain_timeout_s: float = Field(default=60.0, ge=0)
    # None: what the server's /v1/models capabilities say (its batch), else DEFAULT_CONCURRENCY
    concurrency: int | None = Field(default=None, ge=1)
    # idle parks (instead of stopping) when the server can park; parked this long, it is stopped
    park: bool = True
    parked_timeout_s: float = Field(default=3600.0, ge=0)
    queue_size: int = Field(default=64, ge=0)
    vram_mb: int | None = Field(default=None, ge=0)
    warmup: Warmup | None = None
    liveness: Liveness = Field(default_factory=Liveness)
    retry_after_s: int = Field(default=5, ge=1)
    restart_backoff_s: float = Field(default=2.0, ge=0)
    restart_backoff_max_s: float = Field(default=60.0, ge=0)
    # routing (voxgate_manager/routing): the models that answer when this one cannot be ready in time
    fallback: list[str] = Field(default_factory=list)
    fallback_after_s: float = Field(default=2.0, gt=0)
    fallback_policy: Literal["fallback", "queue"] = "fallback"  # queue: hold up to hold_max_s instead
    # response cache (voxgate_manager/cache): auto = on unless the model samples and the request has no seed
    cache: Literal["auto", "on", "off"] = "auto"
    sampling: bool = False  # the same request can give different audio (Chatterbox): cache only with a seed
    price: Price | None = None  # cost accounting (voxgate_manager/usage)
    # known before the model runs (catalog, Wyoming info); the server's own list wins once seen
    voices: list[DeclaredVoice] = Field(default_factory=list)
    # voice alias -> base voice + generation settings, applied by the manager (voices.py)
    voice_presets: dict[str, VoicePreset] = Field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [self.id, *self.aliases]

    def spec_hash(self) -> str:
        """Identity of what a runtime is built from; a changed hash means restart on reload."""
        # voices and presets are the manager's own: changing them needs no restart of the model
        blob = json.dumps(self.model_dump(mode="json", exclude={"voices", "voice_presets"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def runtime_hash(self) -> str:
        """Only the fields baked into a container: a stale container is re-created when it changes."""
        blob = json.dumps(self.runtime.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class ModelsFile(_Strict):
    models: list[ModelSpec] = Field(min_length=1)
    default_model: str | None = None  # used when a request names no model; default: the first

    @model_validator(mode="after")
    def _unique(self) -> "ModelsFile":
        seen: dict[str, str] = {}
        ports: dict[tuple[str, int], str] = {}
        names: dict[str, str] = {}
        for i, m in enumerate(self.models):
            for name in m.names:
                if name in seen:
                    raise ValueError(
                        f"models[{i}]: name {name!r} is already used by model {seen[name]!r} (ids and aliases must be unique)"
                    )
                seen[name] = m.id
            rt = m.runtime
            if isinstance(rt, (DockerRuntime, ProcessRuntime)):
                key = (rt.host, rt.port)
                if key in ports:
                    raise ValueError(f"models[{i}].runtime.port: {rt.port} is also used by model {ports[key]!r}")
                ports[key] = m.id
            if isinstance(rt, DockerRuntime):
                cname = container_name(m)
                if cname in names:
                    raise ValueError(f"models[{i}].runtime.container_name: {cname!r} is also used by model {names[cname]!r}")
                names[cname] = m.id
        for i, m in enumerate(self.models):
            for j, name in enumerate(m.fallback):
                if name not in seen:
                    raise ValueError(f"models[{i}].fallback[{j}]: {name!r} is not a model id or alias")
                if seen[name] == m.id:
                    raise ValueError(f"models[{i}].fallback[{j}]: a model cannot fall back to itself")
        if self.default_model is not None and self.default_model not in seen:
            raise ValueError(f"default_model: {self.default_model!r} is not a model id or alias")
        return self

    def resolve(self, name: str | None) -> ModelSpec | None:
        if not name:
            name = self.default_model or self.models[0].id
        for m in self.models:
            if name in m.names:
                return m
        return None


def container_name(spec: ModelSpec) -> str:
    rt = spec.runtime
    assert isinstance(rt, DockerRuntime)
    return rt.container_name or f"voxgate-{spec.id}"


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("docker", "process", "remote", "openai", "openai-compatible", "elevenlabs") and out.endswith("runtime"):
            continue  # the discriminated-union tag pydantic inserts is not a JSON key
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_models(data: Any, source: str = "models.json") -> ModelsFile:
    try:
        return ModelsFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:5]:
            where = _loc(tuple(err.get("loc", ())))
            msg = err.get("msg", "invalid")
            if err.get("type") == "union_tag_invalid" or err.get("type") == "union_tag_not_found":
                msg = "must have \"type\": \"docker\", \"process\", \"remote\", \"openai\", \"openai-compatible\" or \"elevenlabs\""
            lines.append(f"{where}: {msg}")
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a key given twice is a mistake (json.loads keeps the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ConfigError(f"{name} is not a valid number in models.json")


def check_listener_ports(models: ModelsFile, listeners: dict[str, tuple[str, int]]) -> None:
    """A model on the manager's own (public or admin) port could never start: refuse the file."""
    for i, m in enumerate(models.models):
        rt = m.runtime
        if not isinstance(rt, (DockerRuntime, ProcessRuntime)):
            continue
        for what, (host, port) in listeners.items():
            if port and rt.port == port and (rt.host == host or "0.0.0.0" in (rt.host, host) or {rt.host, host} <= {"127.0.0.1", "localhost"}):
                raise ConfigError(f"models[{i}].runtime.port: {port} is the manager's own {what} port; give model {m.id!r} another port")


def load_models(path: str | Path) -> ModelsFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    return parse_models(data, str(p))
