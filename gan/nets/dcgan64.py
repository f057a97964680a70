"""The DCGAN paper's 64x64 networks (Radford et al. 2015), as in the MXNet DCGAN tutorial.

G: z (B, latent, 1, 1) -> 4x4 -> 8x8 -> 16x16 -> 32x32 -> 64x64, tanh.
D: 64x64 -> 32x32 -> 16x16 -> 8x8 -> 4x4 -> logit.
Widths are multiples of `base_channels` (128 gives the paper's 1024-512-256-128).
"""

from typing import Any

from torch import nn

from gan.nets import check_positive, init_dcgan_weights
from gan.nets.base import BaseDiscriminator, BaseGenerator

NAME = "dcgan64"


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    """4x4 stride-2 transposed conv doubling the size, then BN + ReLU."""
    return [
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),  # bias=False: BN follows
        nn.BatchNorm2d(c_out),
        nn.ReLU(True),
    ]


def _down(c_in: int, c_out: int, bn: bool = True) -> list[nn.Module]:
    """4x4 stride-2 conv halving the size, then (BN +) LeakyReLU(0.2)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2))  # 0.2: the DCGAN paper's slope
    return layers


class Generator(BaseGenerator):
    img_size: int = 64

    def __init__(self, latent_dim: int = 100, base_channels: int = 128, **cond: Any) -> None:
        super().__init__(latent_dim, **cond)
        check_positive(NAME, "base_channels", base_channels)
        ch = base_channels
        self.net = nn.Sequential(
            nn.ConvTranspose2d(self.in_dim, 8 * ch, 4, 1, 0, bias=False),  # (B, 8ch, 4, 4)
            nn.BatchNorm2d(8 * ch),
            nn.ReLU(True),
            *_up(8 * ch, 4 * ch),  # (B, 4ch, 8, 8)
            *_up(4 * ch, 2 * ch),  # (B, 2ch, 16, 16)
            *_up(2 * ch, ch),  # (B, ch, 32, 32)
            nn.ConvTranspose2d(ch, self.channels, 4, 2, 1, bias=False),  # (B, C, 64, 64)
            nn.Tanh(),
        )
        self.attach_condition()
        init_dcgan_weights(self)


class Discriminator(BaseDiscriminator):
    family = NAME
    img_size: int = 64

    def __init__(self, base_channels: int = 128, **cond: Any) -> None:
        super().__init__(**cond)
        check_positive(NAME, "base_channels", base_channels)
        ch = base_channels
        self.net = nn.Sequential(
            *_down(
                self.in_channels, ch, bn=False
            ),  # (B, ch, 32, 32); no BN on the input layer (paper)
            *_down(ch, 2 * ch),  # (B, 2ch, 16, 16)
            *_down(2 * ch, 4 * ch),  # (B, 4ch, 8, 8)
            *_down(4 * ch, 8 * ch),  # (B, 8ch, 4, 4)
            nn.Conv2d(8 * ch, 1, 4, 1, 0, bias=False),  # (B, 1, 1, 1)
        )
        self.attach_condition()
        init_dcgan_weights(self)
