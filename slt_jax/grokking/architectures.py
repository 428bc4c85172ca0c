"""The authors' other networks for modular addition, as ``flax.nnx`` modules.

Besides the quadratic network (``model``), the paper's authors trained
three networks on the same task; each takes the integer pairs ``(a, b)``
(B, 2) and returns (B, p) outputs:

- ``ReLUNet`` (``ReLUNetConfig``): the paper network with ReLU in place of
  the square, ``V relu(W [e_a ; e_b])``, two bias-free linear layers
  (``W``: 2p -> K, ``V``: K -> p). Authors' default K = 1024.
- ``EmbedMLP`` (``EmbedMLPConfig``): one embedding shared by both summands
  (``embed``: p -> E), a linear projection with bias for each (``left``
  for a, ``right`` for b: E -> H), their sum through GELU, and a bias-free
  output layer (``out``: H -> p). Authors' defaults E = 12, H = 48.
- ``Transformer`` (``TransformerConfig``): the embedding of both tokens
  (``embed``: p -> d; no positional encoding), ``num_layers`` post-norm
  encoder layers as PyTorch's ``nn.TransformerEncoderLayer`` (``x =
  LN(x + attention(x))``, ``x = LN(x + W2 gelu(W1 x + b1) + b2)``, LayerNorm
  eps 1e-5), the mean over the two tokens and a bias-free output layer
  (``out``: d -> p). Authors' defaults: 2 layers, 1 head, feed-forward 256,
  d = 12 (their ``embed_dim``).

Initialisation follows PyTorch's defaults, as the authors trained: linear
weights and biases ``U(+-1/sqrt(fan_in))``, embeddings ``N(0, 1)``, the
attention's query/key/value kernels ``U(+-sqrt(1.5/d))`` (Xavier over
PyTorch's stacked (3d, d) matrix) with zero biases, its output projection's
bias zero. The transformer has no dropout (PyTorch's default 0.1 is a
training-time regulariser; an LLC is measured in evaluation mode) and the
GELU is the exact (erf) one, as ``nn.GELU``.

``ArchitectureTask`` trains any of them through ``slt_jax.training`` on the
``data.ModularData`` pairs with a loss of ``losses.LOSSES``; its ``loss`` is
also the LLC engine's ``loss_fn``. ``layer_patterns`` and ``head_mask``
name the weights of a restricted LLC (``slt_jax.llc.mask_from_paths``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, ClassVar, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slt_jax.checks import check, check_types
from slt_jax.grokking import data, losses
from slt_jax.grokking.config import LOSSES
from slt_jax.grokking.data import Batch
from slt_jax.llc.flax_models import split_nnx
from slt_jax.llc.masks import mask_from_paths
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = [
  "ARCHITECTURES",
  "METRIC_NAMES",
  "ArchitectureConfig",
  "ArchitectureTask",
  "EmbedMLP",
  "EmbedMLPConfig",
  "EncoderLayer",
  "ReLUNet",
  "ReLUNetConfig",
  "Transformer",
  "TransformerConfig",
  "apply_fn",
  "evaluate_outputs",
  "head_mask",
  "num_params",
]

METRIC_NAMES = ("train_loss", "val_loss", "train_acc", "val_acc")
# PyTorch's nn.Linear default: weights U(+-1/sqrt(fan_in)).
_TORCH_KERNEL = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
# PyTorch's nn.MultiheadAttention: Xavier-uniform over the stacked (3d, d)
# query/key/value matrix, i.e. U(+-sqrt(6 / 4d)) for each d x d kernel.
_TORCH_QKV = nnx.initializers.variance_scaling(0.5, "fan_avg", "uniform")


def _torch_bias(fan_in: int) -> Callable:
  """PyTorch's nn.Linear default bias: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
    key, shape, dtype, -bound, bound
  )


def _linear(
  fan_in: int, fan_out: int, rngs: nnx.Rngs, use_bias: bool = True
) -> nnx.Linear:
  """An ``nnx.Linear`` with PyTorch's default initialisation."""
  return nnx.Linear(
    fan_in,
    fan_out,
    use_bias=use_bias,
    kernel_init=_TORCH_KERNEL,
    bias_init=_torch_bias(fan_in),
    rngs=rngs,
  )


def _embed(p: int, dim: int, rngs: nnx.Rngs) -> nnx.Embed:
  """An ``nnx.Embed`` with PyTorch's default N(0, 1) initialisation."""
  return nnx.Embed(
    p, dim, embedding_init=nnx.initializers.normal(1.0), rngs=rngs
  )


class ReLUNet(nnx.Module):
  """``f(a, b) = V relu(W [e_a ; e_b])``, no biases (the paper network with
  ReLU for the square).

  Parameters: ``W/kernel`` (2p, K), ``V/kernel`` (K, p).
  """

  def __init__(self, p: int, width: int, *, rngs: nnx.Rngs):
    self.p = p
    self.W = _linear(2 * p, width, rngs, use_bias=False)
    self.V = _linear(width, p, rngs, use_bias=False)

  def __call__(self, pairs_Bx2: jax.Array) -> jax.Array:
    """(B, 2) integer pairs -> (B, p) outputs."""
    x_BxD = data.one_hot_inputs(pairs_Bx2, self.p)
    return self.V(jax.nn.relu(self.W(x_BxD)))


class EmbedMLP(nnx.Module):
  """``f(a, b) = out gelu(left(E a) + right(E b))`` with one embedding E.

  Parameters: ``embed/embedding`` (p, E); ``left`` and ``right``:
  ``kernel`` (E, H), ``bias`` (H,); ``out/kernel`` (H, p).
  """

  def __init__(self, p: int, embed_dim: int, hidden_dim: int, *, rngs):
    self.embed = _embed(p, embed_dim, rngs)
    self.left = _linear(embed_dim, hidden_dim, rngs)
    self.right = _linear(embed_dim, hidden_dim, rngs)
    self.out = _linear(hidden_dim, p, rngs, use_bias=False)

  def __call__(self, pairs_Bx2: jax.Array) -> jax.Array:
    """(B, 2) integer pairs -> (B, p) outputs."""
    e_Bx2xE = self.embed(pairs_Bx2)
    h_BxH = self.left(e_Bx2xE[:, 0]) + self.right(e_Bx2xE[:, 1])
    return self.out(jax.nn.gelu(h_BxH, approximate=False))


class EncoderLayer(nnx.Module):
  """A post-norm encoder layer (PyTorch's ``nn.TransformerEncoderLayer``
  with GELU, without dropout).

  Parameters: ``attention`` (``nnx.MultiHeadAttention``: ``query``, ``key``,
  ``value`` kernels (d, heads, d/heads) and biases (heads, d/heads), ``out``
  kernel (heads, d/heads, d) and bias (d,)), ``norm1`` and ``norm2``
  (``scale``, ``bias`` (d,)), ``ff_in`` (d -> F) and ``ff_out`` (F -> d)
  with biases.
  """

  def __init__(
    self, d_model: int, num_heads: int, feedforward_dim: int, *, rngs
  ):
    self.attention = nnx.MultiHeadAttention(
      num_heads=num_heads,
      in_features=d_model,
      qkv_features=d_model,
      out_features=d_model,
      kernel_init=_TORCH_QKV,
      out_kernel_init=_TORCH_KERNEL,
      bias_init=nnx.initializers.zeros_init(),
      decode=False,
      rngs=rngs,
    )
    self.norm1 = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)
    self.ff_in = _linear(d_model, feedforward_dim, rngs)
    self.ff_out = _linear(feedforward_dim, d_model, rngs)
    self.norm2 = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)

  def __call__(self, x_BxTxd: jax.Array) -> jax.Array:
    """(B, T, d) -> (B, T, d)."""
    x_BxTxd = self.norm1(x_BxTxd + self.attention(x_BxTxd))
    ff_BxTxd = self.ff_out(jax.nn.gelu(self.ff_in(x_BxTxd), approximate=False))
    return self.norm2(x_BxTxd + ff_BxTxd)


class Transformer(nnx.Module):
  """Embedding, post-norm encoder layers, mean over the two tokens, a
  bias-free output layer.

  Parameters: ``embed/embedding`` (p, d), ``layers/i/...`` (``EncoderLayer``
  for i < num_layers), ``out/kernel`` (d, p).
  """

  def __init__(
    self,
    p: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    feedforward_dim: int,
    *,
    rngs: nnx.Rngs,
  ):
    self.embed = _embed(p, d_model, rngs)
    self.layers = nnx.List(
      [
        EncoderLayer(d_model, num_heads, feedforward_dim, rngs=rngs)
        for _ in range(num_layers)
      ]
    )
    self.out = _linear(d_model, p, rngs, use_bias=False)

  def __call__(self, pairs_Bx2: jax.Array) -> jax.Array:
    """(B, 2) integer pairs -> (B, p) outputs."""
    x_Bx2xd = self.embed(pairs_Bx2)
    for layer in self.layers:
      x_Bx2xd = layer(x_Bx2xd)
    return self.out(x_Bx2xd.mean(axis=1))


def _check_sizes(config, *names: str) -> None:
  """Checks a config's field types, ``p >= 2`` and the sizes ``names`` >= 1."""
  check_types(config)
  check(config.p >= 2, "p", config.p, "must be >= 2")
  for name in names:
    value = getattr(config, name)
    check(value >= 1, name, value, "must be >= 1")


@dataclasses.dataclass(frozen=True)
class ReLUNetConfig:
  """``ReLUNet``'s sizes (defaults: the authors').

  Attributes:
    p: modulus.
    width: hidden units K.

  Example:
    >>> ReLUNetConfig(p=5, width=8).num_params()  # 2p K + K p
    120
  """

  p: int = 53
  width: int = 1024
  kind: ClassVar[str] = "relu_net"

  def __post_init__(self):
    _check_sizes(self, "width")

  def build(self, rngs: nnx.Rngs) -> ReLUNet:
    """A fresh network drawn from ``rngs``."""
    return ReLUNet(self.p, self.width, rngs=rngs)

  def num_params(self) -> int:
    """``3 p K``."""
    return 3 * self.p * self.width

  def layer_patterns(self) -> dict[str, str]:
    """Layer name -> path pattern of its weights."""
    return {"W (input)": "W/*", "V (output)": "V/*"}


@dataclasses.dataclass(frozen=True)
class EmbedMLPConfig:
  """``EmbedMLP``'s sizes (defaults: the authors').

  Attributes:
    p: modulus.
    embed_dim: embedding size E.
    hidden_dim: hidden units H.

  Example:
    >>> EmbedMLPConfig(p=5, embed_dim=2, hidden_dim=3).num_params()
    43
  """

  p: int = 53
  embed_dim: int = 12
  hidden_dim: int = 48
  kind: ClassVar[str] = "embed_mlp"

  def __post_init__(self):
    _check_sizes(self, "embed_dim", "hidden_dim")

  def build(self, rngs: nnx.Rngs) -> EmbedMLP:
    """A fresh network drawn from ``rngs``."""
    return EmbedMLP(self.p, self.embed_dim, self.hidden_dim, rngs=rngs)

  def num_params(self) -> int:
    """``p E + 2 (E H + H) + H p``."""
    e, h = self.embed_dim, self.hidden_dim
    return self.p * e + 2 * (e * h + h) + h * self.p

  def layer_patterns(self) -> dict[str, Union[str, list]]:
    """Layer name -> path pattern(s) of its weights."""
    return {
      "embedding": "embed/*",
      "input projections": ["left/*", "right/*"],
      "output": "out/*",
    }


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """``Transformer``'s sizes (defaults: the authors').

  Attributes:
    p: modulus.
    d_model: token width d (a multiple of num_heads).
    num_layers: encoder layers.
    num_heads: attention heads per layer.
    feedforward_dim: feed-forward width F.

  Example:
    >>> TransformerConfig(p=5, d_model=4, num_layers=1, feedforward_dim=8).num_params()
    212
  """

  p: int = 53
  d_model: int = 12
  num_layers: int = 2
  num_heads: int = 1
  feedforward_dim: int = 256
  kind: ClassVar[str] = "transformer"

  def __post_init__(self):
    _check_sizes(self, "d_model", "num_layers", "num_heads", "feedforward_dim")
    check(
      self.d_model % self.num_heads == 0,
      "d_model",
      self.d_model,
      f"must be a multiple of num_heads={self.num_heads}",
    )

  def build(self, rngs: nnx.Rngs) -> Transformer:
    """A fresh network drawn from ``rngs``."""
    return Transformer(
      self.p,
      self.d_model,
      self.num_layers,
      self.num_heads,
      self.feedforward_dim,
      rngs=rngs,
    )

  def num_params(self) -> int:
    """``2 p d + layers (4 d^2 + 4 d + 4 d + 2 d F + F + d)``: embedding
    and output, then per layer attention, two LayerNorms, feed-forward."""
    d, f = self.d_model, self.feedforward_dim
    per_layer = (4 * d * d + 4 * d) + 4 * d + (2 * d * f + f + d)
    return 2 * self.p * d + self.num_layers * per_layer

  def layer_patterns(self) -> dict[str, str]:
    """Layer name -> path pattern of its weights: the embedding, each
    encoder layer whole, the output."""
    patterns = {"embedding": "embed/*"}
    for i in range(self.num_layers):
      patterns[f"layer {i}"] = f"layers/{i}/**"
    patterns["output"] = "out/*"
    return patterns


ArchitectureConfig = Union[ReLUNetConfig, EmbedMLPConfig, TransformerConfig]
ARCHITECTURES = {
  c.kind: c for c in (ReLUNetConfig, EmbedMLPConfig, TransformerConfig)
}


def head_mask(
  params: ArrayTree, layer: int, head: int, batch_ndim: int = 0
) -> ArrayTree:
  """The 0/1 mask of one attention head of a ``Transformer``: its slices of
  the query, key and value kernels and biases and of the output projection's
  kernel (the output bias is shared by the heads and stays out).

  Args:
    params: a ``Transformer``'s state (``split_nnx``), with ``batch_ndim``
      leading point axes.
    layer: encoder layer index.
    head: head index.
    batch_ndim: leading point axes of ``params``.

  Returns:
    A mask like one point's ``params`` (``mask_from_paths``).

  Raises:
    ValueError: naming ``layer`` or ``head`` when ``params`` has none such.

  Example:
    >>> cfg = TransformerConfig(p=5, d_model=4, num_layers=1, num_heads=2,
    ...                         feedforward_dim=8)
    >>> params, _ = split_nnx(cfg.build(nnx.Rngs(0)))
    >>> mask = head_mask(params, 0, 1)
    >>> mask["layers"][0]["attention"]["query"]["kernel"][...][:, :, 0].tolist()
    [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
  """
  num_layers = len(params["layers"])
  check(
    0 <= layer < num_layers, "layer", layer, f"must be in [0, {num_layers})"
  )
  kernel = params["layers"][layer]["attention"]["query"]["kernel"][...]
  num_heads = kernel.shape[batch_ndim + 1]
  check(0 <= head < num_heads, "head", head, f"must be in [0, {num_heads})")
  prefix = f"layers/{layer}/attention"
  return mask_from_paths(
    params,
    {
      f"{prefix}/[qkv]*/kernel": np.s_[:, head],
      f"{prefix}/[qkv]*/bias": np.s_[head],
      f"{prefix}/out/kernel": np.s_[head],
    },
    batch_ndim=batch_ndim,
  )


@functools.lru_cache(maxsize=None)
def apply_fn(arch: ArchitectureConfig) -> Callable:
  """``apply(params, pairs (B, 2)) -> (B, p)`` of the architecture
  (``split_nnx``'s, one per config)."""
  return split_nnx(arch.build(nnx.Rngs(0)))[1]


def num_params(params: ArrayTree) -> int:
  """Scalars in one point's parameter state."""
  return sum(int(np.size(x)) for x in jax.tree.leaves(params))


def evaluate_outputs(
  out_NxP: jax.Array, labels_N: jax.Array, num_train: jax.Array, loss: str
) -> jax.Array:
  """Loss and accuracy on the train prefix and the validation rest.

  Args:
    out_NxP: (N, p) outputs on all pairs, training pairs first.
    labels_N: (N,) labels.
    num_train: scalar, training rows.
    loss: the loss reported (``losses.LOSSES``).

  Returns:
    (4,) ordered as ``METRIC_NAMES``.

  Example:
    >>> out = jnp.eye(3)[jnp.array([0, 1, 0])]
    >>> evaluate_outputs(out, jnp.array([0, 1, 2]), 2, "mse").tolist()
    [0.0, 1.0, 1.0, 0.0]
  """
  in_train_N = (jnp.arange(out_NxP.shape[0]) < num_train).astype(jnp.float32)
  splits = (in_train_N, 1.0 - in_train_N)
  return jnp.stack(
    [losses.loss_from_outputs(loss, out_NxP, labels_N, w) for w in splits]
    + [losses.accuracy_from_outputs(out_NxP, labels_N, w) for w in splits]
  )


@dataclasses.dataclass(frozen=True)
class ArchitectureTask:
  """An architecture on modular addition as a ``slt_jax.training.Task``.

  Hashable and equal for equal fields, so calls of one setup share their
  compiled programs. The data are a ``data.Batch`` of all pairs, training
  pairs first (``ModularData.all``).

  Attributes:
    arch: the architecture's config.
    loss_name: the training loss (``losses.LOSSES``); ``loss`` is also the
      LLC engine's ``loss_fn``.

  Example:
    >>> task = ArchitectureTask(EmbedMLPConfig(p=5, embed_dim=2, hidden_dim=3))
    >>> num_params(task.init(jax.random.key(0)))
    43
  """

  arch: ArchitectureConfig
  loss_name: str = "cross_entropy"
  metric_names: ClassVar[tuple] = METRIC_NAMES

  def __post_init__(self):
    check(
      isinstance(self.arch, tuple(ARCHITECTURES.values())),
      "arch",
      self.arch,
      f"must be a config of {sorted(ARCHITECTURES)}",
    )
    check(
      self.loss_name in LOSSES,
      "loss_name",
      self.loss_name,
      f"must be one of {LOSSES}",
    )

  def init(self, key: PRNGKey) -> nnx.State:
    """The parameters of a fresh network (``split_nnx``'s state)."""
    return split_nnx(self.arch.build(nnx.Rngs(key)))[0]

  def loss(self, params: nnx.State, batch: Batch) -> jax.Array:
    """The (weighted) loss on a Batch: the training and LLC loss."""
    out_BxP = apply_fn(self.arch)(params, batch.pairs)
    return losses.loss_from_outputs(
      self.loss_name, out_BxP, batch.labels, batch.weights
    )

  def metrics(
    self, params: nnx.State, all_data: Batch, num_train: jax.Array
  ) -> jax.Array:
    """``evaluate_outputs`` on all pairs: (4,) ordered as ``METRIC_NAMES``."""
    out_NxP = apply_fn(self.arch)(params, all_data.pairs)
    return evaluate_outputs(out_NxP, all_data.labels, num_train, self.loss_name)
