"""Network building blocks (flax nnx): linear/conv layers with RMSNorm + SiLU, block-diagonal
linear layers for the GRU, the observation encoder and decoder, and output heads.

Parameters are float32; layers compute in ``dtype`` (bfloat16 on accelerators); norms and all
distribution outputs are float32.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .conv import convolve
from .dists import symlog

INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")  # the reference's trunc_normal
ZEROS = nnx.initializers.zeros_init()


def scaled_init(scale: float):
    """INIT with its standard deviation times ``scale`` (0: zeros), as the reference's ``outscale``."""
    return ZEROS if scale == 0 else nnx.initializers.variance_scaling(scale * scale, "fan_in", "truncated_normal")


def block_init(blocks: int):
    """Init of a (blocks, in // blocks, out // blocks) kernel whose fan is the full input width, as in
    the reference (each output sums over one block, so its initial scale is 1/sqrt(blocks) of a dense layer's)."""
    return nnx.initializers.variance_scaling(1.0 / blocks, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1,
                                             batch_axis=(0,))


class Norm(nnx.Module):
    """RMSNorm computed in float32, cast back to the compute dtype."""

    def __init__(self, features: int, dtype, rngs: nnx.Rngs):
        self.norm = nnx.RMSNorm(features, epsilon=1e-4, dtype=jnp.float32, rngs=rngs)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.norm(x.astype(jnp.float32)).astype(self.dtype)


class Dense(nnx.Module):
    """Linear -> RMSNorm -> SiLU."""

    def __init__(self, fan_in: int, units: int, dtype, rngs: nnx.Rngs):
        self.linear = nnx.Linear(fan_in, units, use_bias=False, dtype=dtype, kernel_init=INIT, rngs=rngs)
        self.norm = Norm(units, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.silu(self.norm(self.linear(x)))


class MLP(nnx.Module):
    def __init__(self, fan_in: int, layers: int, units: int, dtype, rngs: nnx.Rngs):
        sizes = [fan_in] + [units] * layers
        self.layers = nnx.List([Dense(a, b, dtype, rngs) for a, b in itertools.pairwise(sizes)])
        self.dtype = dtype
        self.out_size = sizes[-1]

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        for layer in self.layers:
            x = layer(x)
        return x


class Head(nnx.Module):
    """MLP followed by a linear output layer whose initial weights are scaled by ``out_scale`` (0: zeros)."""

    def __init__(self, fan_in: int, layers: int, units: int, out: int, dtype, rngs: nnx.Rngs,
                 out_scale: float = 1.0):
        self.mlp = MLP(fan_in, layers, units, dtype, rngs)
        self.out = nnx.Linear(self.mlp.out_size, out, dtype=dtype, kernel_init=scaled_init(out_scale), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.mlp(x)).astype(jnp.float32)


class Conv(nnx.Module):
    """'SAME' convolution (NHWC) at stride 1 or 2, with the CPU-friendly backward of ``conv.conv2d``."""

    def __init__(self, fan_in: int, out: int, kernel: int, stride: int, use_bias: bool, dtype, rngs: nnx.Rngs):
        self.kernel = nnx.Param(INIT(rngs.params(), (kernel, kernel, fan_in, out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out,), jnp.float32)) if use_bias else None
        self.stride, self.dtype = stride, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = convolve(x.astype(self.dtype), self.kernel.value.astype(self.dtype), self.stride)
        return y if self.bias is None else y + self.bias.value.astype(self.dtype)


class BlockLinear(nnx.Module):
    """Block-diagonal linear layer: ``blocks`` independent linear maps over equal slices."""

    def __init__(self, fan_in: int, out: int, blocks: int, dtype, rngs: nnx.Rngs):
        assert fan_in % blocks == 0 and out % blocks == 0, (fan_in, out, blocks)
        shape = (blocks, fan_in // blocks, out // blocks)
        self.kernel = nnx.Param(block_init(blocks)(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out,), jnp.float32))
        self.blocks, self.dtype = blocks, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (..., blocks, fan_in // blocks) -> (..., blocks * out // blocks)."""
        y = jnp.einsum("...gi,gio->...go", x.astype(self.dtype), self.kernel.value.astype(self.dtype))
        return y.reshape(*y.shape[:-2], -1) + self.bias.value.astype(self.dtype)


def depth_to_space(x: jax.Array) -> jax.Array:
    """(N, H, W, 4C) -> (N, 2H, 2W, C): each pixel's channels become a 2x2 block of pixels."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, 2 * h, 2 * w, c // 4)


def stacked_image_shape(image_shapes: dict[str, tuple]) -> tuple[int, int, int]:
    """(H, W, total channels) of image keys stacked on channels; H and W must agree."""
    sizes = {tuple(shape[:2]) for shape in image_shapes.values()}
    if len(sizes) != 1:
        raise ValueError(f"image keys must share height and width to be stacked, got {dict(image_shapes)}")
    (h, w), = sizes
    return h, w, sum(shape[2] for shape in image_shapes.values())


class Encoder(nnx.Module):
    """Images (HxWxC uint8) through conv stages, vectors (flat) through symlog + MLP; the outputs
    are concatenated. Image keys share H and W and are stacked on channels.
    """

    def __init__(self, image_shapes: dict[str, tuple], vector_sizes: dict[str, int], cfg, dtype, rngs: nnx.Rngs):
        self.image_keys, self.vector_keys, self.dtype = sorted(image_shapes), sorted(vector_sizes), dtype
        self.strided, self.out_size = cfg.strided, 0
        if image_shapes:
            h, w, channels = stacked_image_shape(image_shapes)
            depths = [cfg.depth * m for m in cfg.mults]
            stride = 2 if cfg.strided else 1
            self.convs = nnx.List()
            self.norms = nnx.List()
            for depth in depths:
                self.convs.append(Conv(channels, depth, cfg.kernel, stride, False, dtype, rngs))
                self.norms.append(Norm(depth, dtype, rngs))
                channels, h, w = depth, h // 2, w // 2
            self.out_size += h * w * channels
        if self.vector_keys:
            self.mlp = MLP(sum(vector_sizes.values()), cfg.enc_layers, cfg.units, dtype, rngs)
            self.out_size += cfg.units

    def __call__(self, obs: dict) -> jax.Array:
        """obs values have leading batch axes (...); returns (..., out_size)."""
        outs = []
        if self.image_keys:
            x = jnp.concatenate([obs[k] for k in self.image_keys], -1)
            lead = x.shape[:-3]
            x = x.reshape(-1, *x.shape[-3:]).astype(self.dtype) / 255.0 - 0.5
            for conv, norm in zip(self.convs, self.norms):
                x = conv(x)
                if not self.strided:
                    b, h, w, c = x.shape
                    x = x.reshape(b, h // 2, 2, w // 2, 2, c).max((2, 4))
                x = jax.nn.silu(norm(x))
            outs.append(x.reshape(*lead, -1))
        if self.vector_keys:
            x = jnp.concatenate([obs[k].astype(jnp.float32) for k in self.vector_keys], -1)
            outs.append(self.mlp(symlog(x)))
        return jnp.concatenate([o.astype(self.dtype) for o in outs], -1)


class Decoder(nnx.Module):
    """From model features (deter, flat stoch) back to images (sigmoid) and vectors (symlog space).

    The first image layer maps deter block-wise and stoch through a small MLP to the
    lowest-resolution feature map, which keeps it small for large deter and images. Each stage then
    doubles the resolution by a sub-pixel convolution: a convolution at the input resolution with
    four times the output channels, rearranged into 2x2 pixels (depth to space). It costs the
    FLOPs of resize-then-convolve but runs about 3x faster on CPUs, and it avoids transposed
    convolutions, which XLA runs slowly on CPUs."""

    def __init__(self, deter: int, stoch: int, image_shapes: dict[str, tuple], vector_sizes: dict[str, int], cfg,
                 dtype, rngs: nnx.Rngs):
        self.image_keys, self.vector_sizes, self.dtype = sorted(image_shapes), dict(sorted(vector_sizes.items())), dtype
        self.deter = deter
        if image_shapes:
            h, w, channels = stacked_image_shape(image_shapes)
            self.image_channels = [image_shapes[k][-1] for k in self.image_keys]
            depths = [cfg.depth * m for m in cfg.mults]
            stages = len(depths)
            self.minres = (h // 2**stages, w // 2**stages)
            self.depth_last, self.blocks = depths[-1], math.gcd(cfg.blocks, depths[-1])
            space = math.prod(self.minres) * depths[-1]
            self.space_deter = BlockLinear(deter, space, self.blocks, dtype, rngs)
            self.space_stoch = MLP(stoch, 1, 2 * cfg.units, dtype, rngs)
            self.space_stoch_out = nnx.Linear(2 * cfg.units, space, use_bias=False, dtype=dtype, kernel_init=INIT,
                                              rngs=rngs)
            self.space_norms = nnx.List([Norm(depths[-1], dtype, rngs) for _ in range(2)])
            ins = depths[::-1]
            outs = depths[::-1][1:] + [channels]
            k = cfg.dec_kernel
            self.convs = nnx.List([Conv(a, 4 * b, k, 1, i == stages - 1, dtype, rngs)
                                   for i, (a, b) in enumerate(zip(ins, outs))])
            self.norms = nnx.List([Norm(b, dtype, rngs) for b in outs[:-1]])
        if vector_sizes:
            self.mlp = Head(deter + stoch, cfg.dec_layers, cfg.units, sum(vector_sizes.values()), dtype, rngs)

    def __call__(self, feat: jax.Array) -> dict[str, jax.Array]:
        """Returns image means in [0, 1] (as float32, key -> (..., H, W, C)) and symlog vector means."""
        out = {}
        lead = feat.shape[:-1]
        if self.image_keys:
            flat = feat.reshape(-1, feat.shape[-1])
            deter, stoch = flat[:, :self.deter], flat[:, self.deter:]
            g, (h, w), c = self.blocks, self.minres, self.depth_last
            x0 = self.space_deter(deter.reshape(-1, g, self.deter // g).astype(self.dtype))
            x0 = x0.reshape(-1, g, h, w, c // g).transpose(0, 2, 3, 1, 4).reshape(-1, h, w, c)
            x1 = self.space_stoch_out(self.space_stoch(stoch)).reshape(-1, h, w, c)
            x = jax.nn.silu(self.space_norms[0](x0) + self.space_norms[1](x1))
            for i, conv in enumerate(self.convs):
                x = depth_to_space(conv(x))
                if i < len(self.norms):
                    x = jax.nn.silu(self.norms[i](x))
            x = jax.nn.sigmoid(x.astype(jnp.float32)).reshape(*lead, *x.shape[1:])
            out.update(zip(self.image_keys, jnp.split(x, np.cumsum(self.image_channels)[:-1].tolist(), -1)))
        if self.vector_sizes:
            x = self.mlp(feat)
            sizes = list(self.vector_sizes.values())
            out.update(zip(self.vector_sizes, jnp.split(x, np.cumsum(sizes)[:-1].tolist(), -1)))
        return out
