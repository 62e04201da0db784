"""Logical axis names of the parameters of the nn blocks, for sharding.

Each parameter's dimensions get logical names (("embed", "mlp"),
("embed", "heads", "kv"), ("vocab", "embed"), ...) from the module that owns
it and the parameter's name; `encdec_jax.parallel` maps them onto the mesh by
`config.logical_axis_rules`. They are kept *beside* the parameters (keyed by
the parameter path), not boxed inside them (`nn.with_logical_partitioning`),
so every params tree in the code base stays a plain dict of arrays: the
checkpoints, `save_encoder`/`load_encoder`, the optimizer's path regexes and
the pretrained importers see exactly what they saw before.

Only the Transformer blocks (attention, MLP, embeddings, logits, norms) are
annotated; any other parameter (the RNN cells, classifier heads, conv
blocks) has no names and is replicated. A stacked parameter of
`scan_layers` (one leading axis more than its layer's) gets "layers" first.
"""

# (owner module, parameter name) -> logical axes. The owner is the module
# that holds the parameter (the second-to-last path entry).
_BY_OWNER = {
    ("query", "kernel"): ("embed", "heads", "kv"),
    ("key", "kernel"): ("embed", "heads", "kv"),
    ("value", "kernel"): ("embed", "heads", "kv"),
    ("query", "bias"): ("heads", "kv"),
    ("key", "bias"): ("heads", "kv"),
    ("value", "bias"): ("heads", "kv"),
    ("out", "kernel"): ("heads", "kv", "embed"),
    ("out", "bias"): ("embed",),
    ("intermediate", "kernel"): ("embed", "mlp"),
    ("intermediate", "bias"): ("mlp",),
    ("intermediate_linear", "kernel"): ("embed", "mlp"),  # gated MLP
    ("intermediate_linear", "bias"): ("mlp",),
    ("output", "kernel"): ("mlp", "embed"),
    ("output", "bias"): ("embed",),
    ("token_embed", "embedding"): ("vocab", "embed"),
    ("token_type_embed", "embedding"): (None, "embed"),
    ("position_embed", "pos_embedding"): (None, "embed"),
    ("logits_dense", "kernel"): ("embed", "vocab"),
    ("logits_dense", "bias"): ("vocab",),
}
# Parameters of a Transformer stack itself (owner "encoder" / "decoder" or
# the stack's own module), outside its blocks.
_STACK = {
    ("relative_position_bias", "embedding"): (None, "heads"),  # T5
    ("decoder", "final_logits_bias"): ("vocab",),  # BART, Marian
}
_NORMS = ("attention_norm", "mlp_norm", "self_attention_norm",
          "cross_attention_norm", "encoder_norm", "decoder_norm",
          "embedding_norm")


def logical_axes(path: tuple, shape: tuple) -> tuple:
  """Logical axis names of the parameter at `path` (a tuple of names) with
  `shape`; (None, ...) for a parameter without names (replicated)."""
  path = tuple(str(p) for p in path)
  if len(path) >= 2 and path[-1] in ("lora_a", "lora_b"):
    return _adapter_axes(path, shape)
  axes = None
  if len(path) >= 2:
    owner, name = path[-2], path[-1]
    # Attention/MLP projections only inside the Transformer blocks (an RNN
    # cell or a head may use the same names for something else).
    in_block = any(p.startswith(("layers", "embedder", "logits_dense"))
                   for p in path)
    if in_block and (owner, name) in _BY_OWNER:
      axes = _BY_OWNER[owner, name]
    elif in_block and owner in _NORMS:
      axes = ("norm",)
    elif (owner, name) in _STACK:
      axes = _STACK[owner, name]
  if axes is None:
    return (None,) * len(shape)
  if len(shape) == len(axes) + 1 and "layers" in path:
    return ("layers",) + axes  # stacked by nn.scan (scan_layers)
  if len(shape) != len(axes):
    return (None,) * len(shape)
  return axes


def _adapter_axes(path: tuple, shape: tuple) -> tuple:
  """A LoRA adapter (encdec_jax/lora) of a projection kernel is sharded like
  the kernel's input axes (A: (*in, rank)) or output axes (B: (rank, *out)),
  the rank replicated, a scan_layers "layers" axis first."""
  in_block = any(p.startswith(("layers", "embedder", "logits_dense"))
                 for p in path)
  base = _BY_OWNER.get((path[-2], "kernel")) if in_block else None
  if base is None:
    return (None,) * len(shape)
  n_in = 2 if path[-2] == "out" else 1
  if path[-1] == "lora_a":
    axes = base[:n_in] + (None,)
  else:
    axes = (None,) + base[n_in:]
  stacked = len(shape) - len(axes)
  if stacked not in (0, 1) or (stacked and "layers" not in path):
    return (None,) * len(shape)
  return ("layers",) * stacked + axes
