"""Vanilla fully connected GAN for 28x28 MNIST, after the TensorFlow GAN tutorial.

G: z -> Linear(hidden) -> LeakyReLU -> Linear(784) -> tanh -> (B, 1, 28, 28).
D: image -> flatten -> Linear(hidden) -> LeakyReLU -> Linear(1) -> logit.
Glorot-uniform weights and zero biases, TensorFlow's defaults for dense layers.
"""

from typing import Any

from torch import Tensor, nn

from gan.nets import check_positive, init_xavier_weights
from gan.nets.base import BaseDiscriminator, BaseGenerator

NAME = "mlp"


class Generator(BaseGenerator):
    def __init__(
        self,
        latent_dim: int = 100,
        hidden: int = 128,  # the tutorial's single hidden layer width
        negative_slope: float = 0.01,  # the tutorial's LeakyReLU slope (TF's default is 0.2)
        **cond: Any,
    ) -> None:
        super().__init__(latent_dim, **cond)
        check_positive(NAME, "hidden", hidden)
        self.net = nn.Sequential(
            nn.Linear(self.in_dim, hidden),  # (B, hidden)
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden, self.channels * self.img_size**2),  # (B, C * 784)
            nn.Tanh(),
        )
        self.attach_condition()
        init_xavier_weights(self)  # tf.layers.dense's glorot_uniform

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        x = self.net(self.inputs(z, labels))
        return x.view(-1, self.channels, self.img_size, self.img_size)  # (B, C, 28, 28)


class Discriminator(BaseDiscriminator):
    family = NAME

    def __init__(self, hidden: int = 128, negative_slope: float = 0.01, **cond: Any) -> None:
        super().__init__(**cond)
        check_positive(NAME, "hidden", hidden)
        self.net = nn.Sequential(
            nn.Flatten(),  # (B, C * 784)
            nn.Linear(self.in_channels * self.img_size**2, hidden),  # (B, hidden)
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden, 1),  # (B, 1)
        )
        self.attach_condition()
        init_xavier_weights(self)
