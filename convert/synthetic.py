"""Deterministic synthetic weights for MiDaS v2.1 small (the golden-test recipe).

The official weights cannot be shipped or downloaded everywhere, so tests prove the architecture with
weights made by a fixed recipe whose reference output was computed with the official code. These
weights are for tests only: their output is not depth and is never presented as such.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from convert.midas_small import MidasSmall

GOLDEN_SEED = 20261121
_CONV_WEIGHT_RANK = 4  # (out, in, kh, kw): He-initialised like the recipe


def synthetic_state_dict(seed: int = GOLDEN_SEED) -> OrderedDict[str, torch.Tensor]:
    """Build every tensor of the model's state dict, in order, from one generator (see the recipe)."""
    g = torch.Generator().manual_seed(seed)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, ref in MidasSmall().state_dict().items():
        shape = tuple(ref.shape)
        if name.endswith("num_batches_tracked"):
            t = torch.tensor(0)
        elif name.endswith("running_var"):
            t = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("running_mean"):
            t = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == _CONV_WEIGHT_RANK:
            t = torch.randn(shape, generator=g) * (2 / (shape[1] * shape[2] * shape[3])) ** 0.5
            if name == "scratch.output_conv.4.weight":
                t = t.abs()  # keeps the final ReLU from zeroing the whole output
        elif name.endswith("weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.1 * torch.randn(shape, generator=g)
        out[name] = t
    return out


def synthetic_model(seed: int = GOLDEN_SEED) -> MidasSmall:
    model = MidasSmall()
    model.load_state_dict(synthetic_state_dict(seed), strict=True)
    return model.eval()
