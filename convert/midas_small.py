"""MiDaS v2.1 small (``MidasNet_small``) in plain PyTorch.

The official model is assembled from three repositories at run time (MiDaS, timm's predecessor
gen-efficientnet-pytorch via ``torch.hub``, and its pretrained encoder weights). This file writes the
same network out by hand so that conversion needs nothing but torch: its ``state_dict()`` carries exactly
the 482 names, shapes and dtypes of the official ``midas_v21_small_256.pt``, which therefore loads with
``strict=True``.

Layout: an EfficientNet-Lite3 encoder (``pretrained.layer1..4``, TensorFlow "same" padding, BatchNorm
eps 1e-3, ReLU6, channel multiplier 1.2, depth multiplier 1.4) and an expanded RefineNet decoder
(``scratch``, ``features=64``) ending in a ReLU, so the output is non-negative relative inverse depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 -- PyTorch's own spelling, as every model file writes it
from torch import nn

# BatchNorm epsilon of the TensorFlow-ported EfficientNet weights ("tf_" variants in gen-efficientnet).
_TF_BN_EPS = 1e-3

# (block kind, repeats, kernel, stride, expansion, output channels) of EfficientNet-Lite3 after the
# 1.2 channel and 1.4 depth multipliers (first and last stage unscaled, as in gen-efficientnet's
# ``fix_first_last``); channels are rounded to multiples of 8 as the original does.
_LITE3_STAGES: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 1, 3, 1, 1, 24),
    ("ir", 3, 3, 2, 6, 32),
    ("ir", 3, 5, 2, 6, 48),
    ("ir", 5, 3, 2, 6, 96),
    ("ir", 5, 5, 1, 6, 136),
    ("ir", 6, 5, 2, 6, 232),
    ("ir", 1, 3, 1, 6, 384),
)
_STEM_CHANNELS = 32
ENCODER_CHANNELS = (32, 48, 136, 384)  # channels of pretrained.layer1..layer4


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding, as the ported EfficientNet weights expect.

    For stride 1 that is ordinary symmetric padding. For stride 2, TensorFlow pads less on the top/left
    than on the bottom/right; with even input sizes (the model's inputs are multiples of 32, so every
    stride-2 layer sees even sizes) the split is fixed, which keeps the traced graph free of
    shape-dependent arithmetic and lets OpenVINO reshape the IR to any multiple of 32.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        if stride == 1:
            super().__init__(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False)
            self._pad: tuple[int, int, int, int] | None = None
        else:
            super().__init__(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)
            total = kernel - stride  # max((ceil(n / s) - 1) * s + k - n, 0) for even n and s == 2
            before = total // 2
            self._pad = (before, total - before, before, total - before)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_TF_BN_EPS)


class DepthwiseSeparable(nn.Module):
    """EfficientNet "ds" block: depthwise 3x3, BN, ReLU6, pointwise, BN (no residual here: 32 -> 24)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = SameConv2d(in_ch, in_ch, kernel, stride, groups=in_ch)
        self.bn1 = _bn(in_ch)
        self.act1 = nn.ReLU6()
        self.conv_pw = SameConv2d(in_ch, out_ch, 1)
        self.bn2 = _bn(out_ch)
        self.has_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn2(self.conv_pw(self.act1(self.bn1(self.conv_dw(x)))))
        return out + x if self.has_residual else out


class InvertedResidual(nn.Module):
    """EfficientNet "ir" (MBConv) block without squeeze-excitation, as in the Lite variants."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_ch * expansion
        self.conv_pw = SameConv2d(in_ch, mid, 1)
        self.bn1 = _bn(mid)
        self.act1 = nn.ReLU6()
        self.conv_dw = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self.bn2 = _bn(mid)
        self.act2 = nn.ReLU6()
        self.conv_pwl = SameConv2d(mid, out_ch, 1)
        self.bn3 = _bn(out_ch)
        self.has_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act1(self.bn1(self.conv_pw(x)))
        out = self.act2(self.bn2(self.conv_dw(out)))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.has_residual else out


def _efficientnet_lite3_blocks() -> list[nn.Sequential]:
    stages: list[nn.Sequential] = []
    in_ch = _STEM_CHANNELS
    for kind, repeats, kernel, stride, expansion, out_ch in _LITE3_STAGES:
        blocks: list[nn.Module] = []
        for i in range(repeats):
            s = stride if i == 0 else 1
            if kind == "ds":
                blocks.append(DepthwiseSeparable(in_ch, out_ch, kernel, s))
            else:
                blocks.append(InvertedResidual(in_ch, out_ch, kernel, s, expansion))
            in_ch = out_ch
        stages.append(nn.Sequential(*blocks))
    return stages


class Encoder(nn.Module):
    """EfficientNet-Lite3 cut into MiDaS's four feature levels (strides 4, 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        s = _efficientnet_lite3_blocks()
        stem = [SameConv2d(3, _STEM_CHANNELS, 3, 2), _bn(_STEM_CHANNELS), nn.ReLU6()]
        self.layer1 = nn.Sequential(*stem, s[0], s[1])
        self.layer2 = nn.Sequential(s[2])
        self.layer3 = nn.Sequential(s[3], s[4])
        self.layer4 = nn.Sequential(s[5], s[6])


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit of the RefineNet decoder (ReLU, conv, ReLU, conv, add)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv2(self.activation(self.conv1(self.activation(x))))
        return out + x


class FeatureFusionBlock(nn.Module):
    """Fuses a decoder path with a skip connection, upsamples x2 (align_corners=True) and projects."""

    def __init__(self, features: int, expand: bool) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features // 2 if expand else features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, path: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        out = self.resConfUnit2(path)
        out = F.interpolate(out, scale_factor=2.0, mode="bilinear", align_corners=True)
        projected: torch.Tensor = self.out_conv(out)
        return projected


class Interpolate(nn.Module):
    def __init__(self, scale_factor: float) -> None:
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """MiDaS "scratch": per-level 3x3 projections, four fusion blocks and the output head."""

    def __init__(self, features: int = 64) -> None:
        super().__init__()
        widths = (features, features * 2, features * 4, features * 8)
        self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn = (
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
            for c_in, c_out in zip(ENCODER_CHANNELS, widths, strict=True)
        )
        self.refinenet4 = FeatureFusionBlock(widths[3], expand=True)
        self.refinenet3 = FeatureFusionBlock(widths[2], expand=True)
        self.refinenet2 = FeatureFusionBlock(widths[1], expand=True)
        self.refinenet1 = FeatureFusionBlock(widths[0], expand=False)
        self.output_conv = nn.Sequential(
            nn.Conv2d(features, features // 2, 3, padding=1),
            Interpolate(2.0),
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(),  # non_negative=True: inverse depth cannot be negative
            nn.Identity(),
        )


class MidasSmall(nn.Module):
    """MiDaS v2.1 small.

    Input: (N, 3, H, W) float32, RGB scaled to [0, 1] then ImageNet-normalised; H and W multiples of 32.
    Output: (N, H, W) float32, relative inverse depth (larger = nearer; unknown scale and shift).
    """

    def __init__(self) -> None:
        super().__init__()
        self.pretrained = Encoder()
        self.scratch = Decoder(features=64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc, dec = self.pretrained, self.scratch
        layer_1 = enc.layer1(x)
        layer_2 = enc.layer2(layer_1)
        layer_3 = enc.layer3(layer_2)
        layer_4 = enc.layer4(layer_3)
        path_4 = dec.refinenet4(dec.layer4_rn(layer_4))
        path_3 = dec.refinenet3(path_4, dec.layer3_rn(layer_3))
        path_2 = dec.refinenet2(path_3, dec.layer2_rn(layer_2))
        path_1 = dec.refinenet1(path_2, dec.layer1_rn(layer_1))
        return torch.squeeze(dec.output_conv(path_1), dim=1)
