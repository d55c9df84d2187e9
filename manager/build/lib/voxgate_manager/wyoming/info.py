"""The ``info`` answer to ``describe``: one TTS program per model, with every voice it is known to
have (reported by its server when it last ran, else declared in models.json, plus presets).

Voice names are ``<model>:<voice>`` so that a name alone routes a request: Home Assistant sends
only the voice's name in ``synthesize``, and two models may both have a voice called ``alloy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice

from voxgate_manager import __version__

if TYPE_CHECKING:
    from voxgate_manager.manager import Manager

SEPARATOR = ":"
ATTRIBUTION = Attribution(name="voxgate", url="")


def voice_name(model_id: str, voice_id: str) -> str:
    return f"{model_id}{SEPARATOR}{voice_id}"


def build_info(manager: "Manager") -> Info:
    catalog = manager.catalog
    programs: list[TtsProgram] = []
    for ctl in manager.controllers.values():
        voices: list[TtsVoice] = []
        for v in catalog.voices(ctl):
            what = v.get("description") or (f"alias of {v['alias_of']}" if "alias_of" in v else
                                            f"preset of {v['preset_of']}" if "preset_of" in v else v["name"])
            voices.append(TtsVoice(name=voice_name(ctl.id, v["id"]), attribution=ATTRIBUTION, installed=True,
                                   description=f"{v['name']} ({ctl.id}): {what}", version=None,
                                   languages=catalog.languages(ctl, v)))
        if not voices:  # never ran and nothing declared: its default voice still works
            caps = catalog.capabilities(ctl) or {}
            voices.append(TtsVoice(name=voice_name(ctl.id, catalog.default_voice(ctl)), attribution=ATTRIBUTION,
                                   installed=True, description=f"default voice of {ctl.id}", version=None,
                                   languages=[x for x in caps.get("languages", []) if isinstance(x, str)]))
        aliases = ", ".join(ctl.spec.aliases)
        programs.append(TtsProgram(
            name=ctl.id, attribution=ATTRIBUTION, installed=True, version=__version__,
            description=f"voxgate model {ctl.id}" + (f" (also {aliases})" if aliases else "") + f", {ctl.state.value}",
            voices=voices, supports_synthesize_streaming=True,
        ))
    return Info(tts=programs)
