"""Plain-text tables for ``voxgate-manager cache`` and ``voxgate-manager usage``."""

from __future__ import annotations

from typing import Any


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def print_cache(data: dict[str, Any]) -> None:
    if not data.get("enabled"):
        print(data.get("note") or "the response cache is off")
        return
    if "purged" in data:
        print(f"purged {data['purged']} entr{'y' if data['purged'] == 1 else 'ies'}")
        return
    print(f"{data['entries']} entries, {data['bytes'] / 1e6:.2f} of {data['max_bytes'] / 1e6:.0f} MB, "
          f"{data['hits_served']} hits served, {data['evictions']} evicted since start ({data['dir']})")
    rows = [("KEY", "MODEL", "VOICE", "FORMAT", "SIZE", "SECONDS", "HITS")]
    for e in data.get("entries_list", []):
        rows.append((e["key"][:12], e["model"], e["voice"], e["format"], str(e["size"]),
                     f"{e['duration']:.2f}" if e["duration"] is not None else "-", str(e["hits"])))
    if len(rows) > 1:
        _table(rows)


def print_usage(data: dict[str, Any]) -> None:
    rows = [("KEY", "MODEL", "REQUESTS", "CHARS", "AUDIO S", "COST", "CACHE HITS", "FALLBACKS")]
    for u in data["usage"]:
        rows.append((u["key_id"], u["model"], str(u["requests"]), str(u["chars"]), f"{u['audio_seconds']:.1f}",
                     f"{u['cost']:.4f}", str(u["cache_hits"]), str(u["fallbacks"])))
    for key, t in data["totals"].items():
        rows.append((key, "(all)", str(int(t["requests"])), str(int(t["chars"])), f"{t['audio_seconds']:.1f}",
                     f"{t['cost']:.4f}", "", ""))
    _table(rows)
