"""DCGAN for 28x28 MNIST: the DCGAN paper's recipe (strided convs, BatchNorm, ReLU /
LeakyReLU, N(0, 0.02) init) shrunk to two up/down-sampling stages, as in the PyTorch
DCGAN tutorial adapted to MNIST.

G: z (B, latent, 1, 1) -> 7x7 -> 14x14 -> 28x28, tanh.
D: 28x28 -> 14x14 -> 7x7 -> logit.
"""

from typing import Any

from torch import nn

from gan.nets import check_positive, init_dcgan_weights
from gan.nets.base import BaseDiscriminator, BaseGenerator

NAME = "dcgan"


class Generator(BaseGenerator):
    # base_channels 32 (128 -> 64 channels, the width of bench/plain_dcgan.py's loop) is the
    # default run's; the DCGAN tutorials' is 64 (256 -> 128): recipes state which they use.
    def __init__(self, latent_dim: int = 100, base_channels: int = 32, **cond: Any) -> None:
        super().__init__(latent_dim, **cond)
        check_positive(NAME, "base_channels", base_channels)
        ch = base_channels
        self.net = nn.Sequential(
            # bias=False: the BatchNorm that follows has its own shift
            nn.ConvTranspose2d(self.in_dim, 4 * ch, 7, 1, 0, bias=False),  # (B, 4ch, 7, 7)
            nn.BatchNorm2d(4 * ch),
            nn.ReLU(True),
            nn.ConvTranspose2d(4 * ch, 2 * ch, 4, 2, 1, bias=False),  # (B, 2ch, 14, 14)
            nn.BatchNorm2d(2 * ch),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * ch, self.channels, 4, 2, 1),  # (B, C, 28, 28)
            nn.Tanh(),
        )
        self.attach_condition()
        init_dcgan_weights(self)


class Discriminator(BaseDiscriminator):
    family = NAME

    def __init__(self, base_channels: int = 64, **cond: Any) -> None:
        super().__init__(**cond)
        check_positive(NAME, "base_channels", base_channels)
        ch = base_channels
        self.net = nn.Sequential(
            nn.Conv2d(
                self.in_channels, ch, 4, 2, 1
            ),  # (B, ch, 14, 14); no BN on the input layer (paper)
            nn.LeakyReLU(0.2),  # 0.2: the DCGAN paper's slope
            nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False),  # (B, 2ch, 7, 7)
            nn.BatchNorm2d(2 * ch),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ch, 1, 7, 1, 0),  # (B, 1, 1, 1)
        )
        self.attach_condition()
        init_dcgan_weights(self)
