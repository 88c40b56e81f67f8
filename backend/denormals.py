"""Float32 values in the denormal range: slow on x86, worth nothing to the networks."""

from __future__ import annotations


def flush_denormals() -> None:
    """For the commands that run the networks: values in float32's denormal range (underflowing
    attention weights, squared differences of near-identical features) run ~50x slower on x86
    and carry nothing. Not for dataset writing, whose numpy results must stay bit-reproducible."""
    import numpy as np
    import torch

    for dtype in (np.float16, np.float32, np.float64):
        np.finfo(dtype)  # numpy caches its limits; computed under flush-to-zero they warn
    torch.set_flush_denormal(True)
