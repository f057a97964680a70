"""The PaddlePaddle book's DCGAN for 28x28 MNIST (chapter 9, "Generative Adversarial
Networks", `network.py`): fully connected layers into two 5x5 transposed convs in G;
two unpadded conv + max-pool blocks and fc 1024 in D.

G: z -> fc 2048 -> fc 2ch*7*7 -> (B, 2ch, 7, 7) -> deconv (B, 2ch, 14, 14) -> deconv 28x28, tanh.
D: 28x28 -> conv 24x24, pool 12x12 -> conv 8x8, pool 4x4 -> fc 1024 -> logit.
`base_channels=64` gives the book's widths (64 and 128 channels). As in the book: BN and
ReLU after both fc layers of G, ReLU without BN after its first deconv; LeakyReLU with
Paddle's default slope 0.02 in D, BN after its second conv block and its fc layer; Xavier
weights and zero biases (Fluid's defaults).
"""

from typing import Any

from torch import Tensor, nn

from gan.nets import check_positive, init_xavier_weights
from gan.nets.base import BaseDiscriminator, BaseGenerator

NAME = "paddle"


class Generator(BaseGenerator):
    def __init__(
        self,
        latent_dim: int = 100,
        base_channels: int = 64,
        hidden: int = 2048,  # the book's first fc width (gfc_dim)
        **cond: Any,
    ) -> None:
        super().__init__(latent_dim, **cond)
        check_positive(NAME, "base_channels", base_channels)
        check_positive(NAME, "hidden", hidden)
        ch = base_channels
        self.fc = nn.Sequential(
            nn.Linear(self.in_dim, hidden, bias=False),  # (B, hidden); bias=False: BN follows
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
            nn.Linear(hidden, 2 * ch * 7 * 7, bias=False),  # (B, 2ch*7*7)
            nn.BatchNorm1d(2 * ch * 7 * 7),
            nn.ReLU(True),
            nn.Unflatten(1, (2 * ch, 7, 7)),  # (B, 2ch, 7, 7)
        )
        # padding=2, output_padding=1: a 5x5 stride-2 transposed conv exactly doubles the
        # size (Paddle's output_size=[14, 14] and [28, 28])
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(2 * ch, 2 * ch, 5, 2, 2, output_padding=1),  # (B, 2ch, 14, 14)
            nn.ReLU(True),  # no BN here, as in the book
            nn.ConvTranspose2d(2 * ch, self.channels, 5, 2, 2, output_padding=1),  # (B, C, 28, 28)
            nn.Tanh(),
        )
        self.attach_condition()
        init_xavier_weights(self)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.conv(self.fc(self.inputs(z, labels)))  # (B, C, 28, 28)


class Discriminator(BaseDiscriminator):
    family = NAME

    def __init__(
        self,
        base_channels: int = 64,
        hidden: int = 1024,  # the book's fc width before the logit (dfc_dim)
        negative_slope: float = 0.02,  # Paddle's leaky_relu default alpha
        **cond: Any,
    ) -> None:
        super().__init__(**cond)
        check_positive(NAME, "base_channels", base_channels)
        check_positive(NAME, "hidden", hidden)
        ch = base_channels
        # Paddle's simple_img_conv_pool: an unpadded 5x5 conv, its activation, 2x2 max pool.
        self.net = nn.Sequential(
            nn.Conv2d(self.in_channels, ch, 5),  # (B, ch, 24, 24)
            nn.LeakyReLU(negative_slope),
            nn.MaxPool2d(2),  # (B, ch, 12, 12)
            nn.Conv2d(ch, 2 * ch, 5),  # (B, 2ch, 8, 8)
            nn.MaxPool2d(2),  # (B, 2ch, 4, 4)
            nn.BatchNorm2d(2 * ch),  # the book's bn(conv(...)): BN after the pool
            nn.LeakyReLU(negative_slope),
            nn.Flatten(),  # (B, 2ch*4*4)
            nn.Linear(2 * ch * 4 * 4, hidden, bias=False),  # (B, hidden); BN follows
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden, 1),  # (B, 1)
        )
        self.attach_condition()
        init_xavier_weights(self)
