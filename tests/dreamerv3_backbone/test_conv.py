"""conv2d: XLA's forward pass with a rewritten backward pass; both must equal XLA's own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dreamerv3_backbone.conv import conv2d, convolve


def _xla_conv(x, w, stride):
    return lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("stride,kernel,size,cin,cout", [
    (2, 4, 8, 3, 5),  # the encoder's stride-2 kernel-4 stages
    (2, 3, 8, 5, 2),  # odd kernel at stride 2 (cpu and tiny presets)
    (2, 5, 6, 2, 3),
    (2, 1, 6, 3, 2),  # 1x1 at stride 2: the zero tap reads no padding
    (1, 2, 6, 3, 4),  # even kernel at stride 1 (XLA pads the odd pixel at the end)
    (1, 3, 6, 4, 7),  # decoder stages; im2col weight gradient (fewer input channels)
    (1, 3, 6, 7, 4),  # shifted-gradient weight gradient (fewer output channels)
    (1, 5, 5, 3, 3),  # odd image size at stride 1
])
def test_conv2d_matches_xla_forward_and_gradients(stride, kernel, size, cin, cout):
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, size, size + 2, cin))
    w = jax.random.normal(kw, (kernel, kernel, cin, cout))
    out, pull = jax.vjp(lambda x, w: conv2d(x, w, stride), x, w)
    ref, ref_pull = jax.vjp(lambda x, w: _xla_conv(x, w, stride), x, w)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    grad = jax.random.normal(kg, out.shape)
    for got, want in zip(pull(grad), ref_pull(grad)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_conv2d_under_jit_and_second_use():
    x = jnp.ones((1, 4, 4, 2))
    w = jnp.ones((3, 3, 2, 1))
    grad = jax.jit(jax.grad(lambda w: conv2d(x, w, 2).sum()))(w)
    assert grad.shape == w.shape and bool(jnp.isfinite(grad).all())


def test_conv2d_refuses_odd_size_at_stride_2():
    with pytest.raises(ValueError, match="stride 2 on even sizes"):
        conv2d(jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 1)), 2)


def test_convolve_is_conv2d_on_cpu():
    x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 1))
    np.testing.assert_allclose(convolve(x, w, 2), _xla_conv(x, w, 2), rtol=1e-6)
    assert jax.default_backend() != "cpu" or "custom_vjp" in str(jax.make_jaxpr(lambda x: convolve(x, w, 2))(x))
