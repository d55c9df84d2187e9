"""Loading Chatterbox Turbo: local folder or Hugging Face, device and dtype choice."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from voxgate_server.engines.base import EngineError
from voxgate_server.engines.chatterbox_turbo.settings import ChatterboxSettings

log = logging.getLogger("voxgate.chatterbox")

# Added tokens of the Turbo tokenizer that make sounds (upstream gradio_tts_turbo_app.py).
PARALINGUISTIC_TAGS: tuple[str, ...] = (
    "[clear throat]", "[sigh]", "[shush]", "[cough]", "[groan]", "[sniff]", "[gasp]",
    "[chuckle]", "[laugh]",
)


def turbo_t3_config() -> Any:
    """T3's hyper-parameters for Turbo, exactly as ``ChatterboxTurboTTS.from_local`` sets them."""
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config(text_tokens_dict_size=50276)
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    return hp


def choose_device(wanted: str) -> str:
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise EngineError("VOXGATE_CHATTERBOX_DEVICE=cuda but no CUDA device is available")
    if wanted == "auto":
        if torch.cuda.is_available():
            return "cuda"
        log.warning("chatterbox-turbo: no CUDA device, running on CPU (expect RTF > 1)")
        return "cpu"
    return wanted


# Upstream classes whose ``from_local`` loads every module with ``strict=True`` (chatterbox-tts
# 0.1.7): each parameter and buffer the constructors make is then overwritten from the files,
# so their random initialisation can be skipped. (``ChatterboxTTS`` loads S3Gen non-strict.)
_STRICT_LOADERS = frozenset({"ChatterboxTurboTTS", "ChatterboxMultilingualTTS"})
_NO_INIT_LOCK = threading.Lock()  # the patch is process-wide: one loader at a time inside it


@contextlib.contextmanager
def skipped_random_init(class_name: str) -> Iterator[bool]:
    """Construct upstream's modules without filling their weights with random numbers first.

    Upstream builds every module (random init on the CPU: ``kaiming_uniform_``, ``normal_``)
    and then loads the checkpoint over it; the init was half of ``from_local`` on the CPU box
    (34.1 -> 17.7 s, the same 2805 tensors bit for bit). ``transformers``' ``no_init_weights``
    patches ``torch.nn.init`` and ``PreTrainedModel.init_weights`` for the duration. Yields
    whether it is in effect."""
    no_init = None
    if class_name in _STRICT_LOADERS:
        try:
            from transformers.initialization import no_init_weights as no_init
        except ImportError:  # transformers 4.x
            try:
                from transformers.modeling_utils import no_init_weights as no_init
            except ImportError:
                no_init = None
    if no_init is None:
        yield False
        return
    with _NO_INIT_LOCK, no_init():
        yield True


def load_model(settings: ChatterboxSettings, device: str, module: str = "tts_turbo",
               class_name: str = "ChatterboxTurboTTS") -> Any:
    """Build upstream's model class (Turbo by default) with its own loaders; cast T3 to the dtype."""
    import torch

    from voxgate_server.engines.chatterbox_turbo.compat import import_chatterbox

    t0 = time.perf_counter()
    tts_turbo = import_chatterbox(module)
    cls = getattr(tts_turbo, class_name)
    t1 = time.perf_counter()
    log.info("chatterbox imported in %.2f s", t1 - t0)  # bench/park/park_bench.py times the stages by these lines
    if settings.checkpoint_dir is not None:
        if not settings.checkpoint_dir.is_dir():
            raise EngineError(f"checkpoint folder {settings.checkpoint_dir} does not exist")
        with skipped_random_init(class_name) as skipped:
            model = cls.from_local(settings.checkpoint_dir, device)
    else:
        if settings.hf_token is not None and not os.environ.get("HF_TOKEN"):
            os.environ["HF_TOKEN"] = settings.hf_token.get_secret_value()
        try:
            with skipped_random_init(class_name) as skipped:
                model = cls.from_pretrained(device)
        except Exception as exc:  # huggingface_hub raises many types; all mean "not available"
            raise EngineError(f"could not fetch {tts_turbo.REPO_ID} from Hugging Face: {exc}") from exc
    log.info("checkpoint read in %.2f s (random init %s)", time.perf_counter() - t1,
             "skipped" if skipped else "run")
    if settings.dtype != "float32":
        dtype = getattr(torch, settings.dtype)
        model.t3.to(dtype=dtype)
        if model.conds is not None:
            model.conds.t3.to(dtype=dtype)
    return model
