#!/usr/bin/env python3
"""Give an installed resemble-perth random PerthNet weights, if its own are absent.

The GPU bench carries its wheels (64 MiB limit for everything that travels); resemble-perth's
37 MB trained watermark network does not fit next to PyAV's FFmpeg. The bench therefore ships
perth's code without ``perth_net_250000.pth.tar`` and writes a seeded random PerthNet of the
same architecture there: the watermark costs the same compute (the point of the benchmark, like
the rest of the random-weight model), it just is not detectable by the real detector.
"""

from __future__ import annotations

import sys

import torch


def main() -> int:
    # perth imports pkg_resources; setuptools<81 provides it (carried as a wheel).
    from perth.perth_net import PREPACKAGED_MODELS_DIR
    from perth.perth_net.perth_net_implicit.checkpoint_manager import CheckpointManager
    from perth.perth_net.perth_net_implicit.model.perth_net import PerthNet

    cm = CheckpointManager(PREPACKAGED_MODELS_DIR, "implicit")
    if cm.load_latest() is not None:
        print("perth: trained weights present")
        return 0
    torch.manual_seed(0)
    cm.save_model(PerthNet(cm.hp), 250000)
    print("perth: wrote random PerthNet weights to", cm.save_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
