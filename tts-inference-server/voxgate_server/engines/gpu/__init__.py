"""GPU-side helpers shared by CUDA engines (parking through the driver's checkpoint API)."""
