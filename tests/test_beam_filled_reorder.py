"""Beam search reordering only the filled positions of the self-attention
caches (beam_search(length_axes=...), gather_filled_beams) gives exactly
the tokens and scores of the full per-step gather, plain and scan_layers,
GNMT and HF scoring, with hypotheses finishing early."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import decoding
from encdec_jax.decoding.beam_search import (cache_length_axes,
                                             gather_filled_beams)
from encdec_jax.decoding.cross_cache import precompute_cross_attention
from encdec_jax.models.contract import (cache_batch_axes, init_cache,
                                        make_tokens_to_logits)
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.nn.config import TransformerConfig

INPUTS_BxS = jnp.array([[3, 5, 7, 2, 9, 0], [4, 4, 8, 0, 0, 0]], jnp.int32)
BEAMS = 3


def _model(scan_layers: bool):
  model = EncoderDecoder(TransformerConfig(
      vocab_size=20, emb_dim=16, num_heads=2, qkv_dim=16, mlp_dim=32,
      num_encoder_layers=1, num_decoder_layers=2, max_len=16,
      logits_via_embedding=False, scan_layers=scan_layers))
  params = model.init(jax.random.key(0), INPUTS_BxS,
                      jnp.zeros((2, 8), jnp.int32))["params"]
  # Weights x3: peaked enough that hypotheses end in EOS, diverse enough
  # that the beams' caches differ (a stale position changes the scores).
  return model, jax.tree.map(lambda x: 3.0 * x, params)


def _beam(model, params, max_len, eos, filled_only, scoring):
  batch, source_len = INPUTS_BxS.shape
  make = lambda n: init_cache(model, batch * BEAMS, n, source_len)
  encoded = model.apply({"params": params}, INPUTS_BxS, method="encode")
  cache, axes = precompute_cross_attention(
      model, params, encoded, make(max_len),
      cache_batch_axes(model, max_len, source_len))
  length_axes = (cache_length_axes(make, max_len) if filled_only
                 else None)
  return decoding.beam_search(
      make_tokens_to_logits(model, params,
                            decoding.expand_to_beams(encoded, BEAMS)),
      cache, batch, BEAMS, max_len, eos, batch_axes=axes,
      length_axes=length_axes, scoring=scoring, length_penalty=0.6)


@pytest.mark.parametrize("scan_layers,max_len,eos,scoring", [
    (False, 12, 7, "gnmt"),
    pytest.param(True, 9, 7, "hf", marks=pytest.mark.slow)])
def test_filled_only_reorder_gives_the_full_gathers_tokens_and_scores(
    scan_layers, max_len, eos, scoring):
  model, params = _model(scan_layers)
  run = jax.jit(
      lambda p, filled: _beam(model, p, max_len, eos, filled, scoring),
      static_argnums=1)
  want_tokens, want_scores = run(params, False)
  got_tokens, got_scores = run(params, True)
  np.testing.assert_array_equal(got_tokens, want_tokens)
  np.testing.assert_array_equal(got_scores, want_scores)
  # Not a degenerate search: beams differ (and with GNMT scoring some
  # hypotheses end early).
  assert len({tuple(t) for t in np.asarray(want_tokens)[0]}) == BEAMS
  assert scoring == "hf" or (np.asarray(want_tokens) == eos).any()


def test_length_axes_are_the_self_attention_positions_only():
  model, _ = _model(scan_layers=True)
  make = lambda n: init_cache(model, 6, n, 6)
  leaves = jax.tree_util.tree_leaves_with_path(
      cache_length_axes(make, 8), is_leaf=lambda a: a is None)
  axes = {jax.tree_util.keystr(p): a for p, a in leaves}
  # layers x rows x heads x positions x head_dim; cross-attention: none.
  assert {k: a for k, a in axes.items() if a is not None} == {
      k: 3 for k in axes if "self_attention" in k and "cached_" in k}
  assert any(a == 3 for a in axes.values())


def test_a_stale_position_would_be_caught():
  """The reorder leaves positions past `filled` alone: reading them would
  differ from the full gather (what the equality above rules out)."""
  x = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(6, 1, 4, 1)
  parents = jnp.array([[2, 0, 1], [1, 1, 0]])
  full = decoding.gather_beams(x, parents)
  part = gather_filled_beams(x, parents, None, 2, jnp.array(2), 4,
                                      buckets=2)
  np.testing.assert_array_equal(part[:, :, :2], full[:, :, :2])
  assert not np.array_equal(part[:, :, 2:], full[:, :, 2:])
