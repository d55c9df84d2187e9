"""The VRAM-per-profile table from park_bench runs, one folder per configuration.

``run_gpu_bench.sh`` with ``PROFILE_BENCH="name:VAR=value,VAR=value ..."`` runs
``park_bench.py`` once per entry under ``OUT/profile-<name>`` (the entry's environment on top
of the shipped defaults, a burst of as many requests as its batch holds); this collects them:

    python3 bench/park/profile_table.py OUT/profile-* > OUT/profiles.md   (JSON: --json FILE)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def row(folder: Path) -> dict[str, Any]:
    res = json.loads((folder / "park_bench.json").read_text())
    meta = json.loads((folder / "profile.json").read_text()) if (folder / "profile.json").exists() else {}
    burst = res.get("burst_warm") or {}
    summary = res.get("summary") or {}
    return {"profile": meta.get("name", folder.name), "env": meta.get("env", ""),
            "mib_ready": res.get("server_mib_ready"), "n": burst.get("n"),
            "mib_peak_burst": burst.get("server_mib_peak"), "mib_after_burst": res.get("server_mib_after_burst"),
            "audio_s_per_s": res.get("burst_warm_audio_s_per_s_median", burst.get("audio_s_per_s")),
            "bursts_audio_s_per_s": [b.get("audio_s_per_s") for b in res.get("bursts_warm") or [burst]],
            "first_byte_median_s": burst.get("first_byte_median_s"),
            "launch_first_byte_s": (res.get("launch") or {}).get("first_byte"),
            "park_s": summary.get("park_client_s_median"), "parked_first_byte_s": summary.get("parked_first_byte_s_median"),
            "error": res.get("error")}


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| profile | settings | nvidia-smi at ready MiB | N at once | peak during the burst MiB | after it MiB | "
           "audio s/s (median of bursts) | bursts | first byte median s | launch -> first byte s | park s | parked -> first byte s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['profile']} | {r['env'] or 'shipped defaults'} | {r['mib_ready']} | {r['n']} | "
                   f"{r['mib_peak_burst']} | {r['mib_after_burst']} | {r['audio_s_per_s']} | {r['bursts_audio_s_per_s']} | {r['first_byte_median_s']} | "
                   f"{r['launch_first_byte_s']} | {r['park_s']} | {r['parked_first_byte_s']} |"
                   + (f" error: {r['error']}" if r["error"] else ""))
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rows = [row(f) for f in args.folders if (f / "park_bench.json").exists()]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    sys.stdout.write(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
