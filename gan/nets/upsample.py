"""Upsampling-conv GAN for 28x28 MNIST, after Rowel Atienza's Keras tutorial
"GAN by Example using Keras on Tensorflow Backend".

G: z -> fc 8ch*7*7 -> (B, 8ch, 7, 7) -> upsample 14x14 -> upsample 28x28 -> 2 convs, sigmoid;
   BN + ReLU after the fc and each conv but the last, dropout 0.4 after the fc.
D: 28x28 -> 14x14 -> 7x7 -> 4x4 -> 4x4 (stride 1) -> fc -> logit; LeakyReLU(0.2) and
   dropout 0.4 after each conv. Glorot-uniform weights and zero biases (Keras' defaults).
The generator's images lie in (0, 1) (sigmoid), as in the tutorial.
"""

from typing import Any

from torch import Tensor, nn

from gan.nets import check_dropout, check_positive, init_xavier_weights
from gan.nets.base import BaseDiscriminator, BaseGenerator

NAME = "upsample"


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    """5x5 'same' conv (Keras' stride-1 Conv2DTranspose), then BN + ReLU."""
    return [
        nn.Conv2d(c_in, c_out, 5, 1, 2, bias=False),  # bias=False: BN follows
        nn.BatchNorm2d(c_out),
        nn.ReLU(True),
    ]


class Generator(BaseGenerator):
    output: str = "sigmoid"

    def __init__(
        self,
        latent_dim: int = 100,
        base_channels: int = 32,  # narrowest width; 32 gives the tutorial's 256-128-64-32
        dropout: float = 0.4,  # the tutorial's value
        **cond: Any,
    ) -> None:
        super().__init__(latent_dim, **cond)
        check_positive(NAME, "base_channels", base_channels)
        check_dropout(NAME, dropout)
        ch = base_channels
        self.net = nn.Sequential(
            nn.Linear(self.in_dim, 8 * ch * 7 * 7, bias=False),  # (B, 8ch*7*7)
            # PyTorch's default momentum=0.1 is Keras's momentum=0.9 (opposite conventions)
            nn.BatchNorm1d(8 * ch * 7 * 7),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Unflatten(1, (8 * ch, 7, 7)),  # (B, 8ch, 7, 7)
            nn.Upsample(scale_factor=2),  # (B, 8ch, 14, 14)
            *_conv_bn(8 * ch, 4 * ch),  # (B, 4ch, 14, 14)
            nn.Upsample(scale_factor=2),  # (B, 4ch, 28, 28)
            *_conv_bn(4 * ch, 2 * ch),  # (B, 2ch, 28, 28)
            *_conv_bn(2 * ch, ch),  # (B, ch, 28, 28)
            nn.Conv2d(ch, self.channels, 5, 1, 2),  # (B, C, 28, 28)
            nn.Sigmoid(),
        )
        self.attach_condition()
        init_xavier_weights(self)  # Keras' glorot_uniform

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(self.inputs(z, labels))  # (B, C, 28, 28) in (0, 1)


class Discriminator(BaseDiscriminator):
    family = NAME

    def __init__(
        self,
        base_channels: int = 64,  # first width; 64 gives the tutorial's 64-128-256-512
        dropout: float = 0.4,  # the tutorial's value
        **cond: Any,
    ) -> None:
        super().__init__(**cond)
        check_positive(NAME, "base_channels", base_channels)
        check_dropout(NAME, dropout)
        ch = base_channels
        layers: list[nn.Module] = []
        c_in = self.in_channels
        # (B, ch, 14, 14) -> (B, 2ch, 7, 7) -> (B, 4ch, 4, 4) -> (B, 8ch, 4, 4)
        for c_out, stride in ((ch, 2), (2 * ch, 2), (4 * ch, 2), (8 * ch, 1)):
            layers += [nn.Conv2d(c_in, c_out, 5, stride, 2), nn.LeakyReLU(0.2)]
            layers.append(nn.Dropout(dropout))
            c_in = c_out
        self.net = nn.Sequential(
            *layers,
            nn.Flatten(),  # (B, 8ch*4*4)
            nn.Linear(8 * ch * 4 * 4, 1),  # (B, 1)
        )
        self.attach_condition()
        init_xavier_weights(self)  # Keras' glorot_uniform
