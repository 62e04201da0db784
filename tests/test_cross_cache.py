"""Cross-attention keys/values computed before the decoding loop, one row per
source (decoding/cross_cache.py): greedy and beam search (plain, and with a
copy head reading the cross-attention weights) give exactly the tokens and
scores of the cache that fills them inside the loop and keeps them per beam."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import decoding
from encdec_jax.decoding.cross_cache import precompute_cross_attention
from encdec_jax.models.contract import (cache_batch_axes, init_cache,
                                        make_tokens_to_logits)
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.nn.config import TransformerConfig

INPUTS_BxS = jnp.array([[3, 5, 7, 2, 9, 0], [4, 4, 8, 0, 0, 0],
                        [12, 13, 14, 15, 16, 17]], jnp.int32)
MAX_LEN, BEAMS, EOS = 8, 3, 7


@pytest.mark.parametrize("changes", [
    {}, pytest.param(dict(copy=True), marks=pytest.mark.slow)])
def test_precomputed_cross_attention_changes_nothing(changes):
  model = EncoderDecoder(TransformerConfig(
      vocab_size=20, emb_dim=16, num_heads=2, qkv_dim=16, mlp_dim=32,
      num_encoder_layers=1, num_decoder_layers=2, max_len=16,
      logits_via_embedding=False, **changes))
  params = model.init(jax.random.key(0), INPUTS_BxS,
                      jnp.zeros((3, MAX_LEN), jnp.int32))["params"]

  @jax.jit
  def both(params):
    encoded = model.apply({"params": params}, INPUTS_BxS, method="encode")
    step = make_tokens_to_logits(model, params, encoded)
    beam_step = make_tokens_to_logits(
        model, params, decoding.expand_to_beams(encoded, BEAMS))
    axes = cache_batch_axes(model, MAX_LEN, 6)
    out = {}
    for pre in (False, True):
      cache, beam_cache = (init_cache(model, 3, MAX_LEN, 6),
                           init_cache(model, 3 * BEAMS, MAX_LEN, 6))
      beam_axes = axes
      if pre:
        cache, _ = precompute_cross_attention(model, params, encoded, cache)
        beam_cache, beam_axes = precompute_cross_attention(
            model, params, encoded, beam_cache, axes)
        kv = beam_cache["decoder"]["layers_0"]["cross_attention"]
        assert set(kv) == {"cached_key", "cached_value"}
        assert kv["cached_key"].shape[0] == 3  # not 3 * BEAMS
      out[pre] = (decoding.greedy_decode(step, cache, 3, MAX_LEN, EOS),
                  decoding.beam_search(beam_step, beam_cache, 3, BEAMS,
                                       MAX_LEN, EOS, length_penalty=0.6,
                                       batch_axes=beam_axes))
    return out

  out = both(params)
  np.testing.assert_array_equal(out[True][0], out[False][0])
  np.testing.assert_array_equal(out[True][1][0], out[False][1][0])
  np.testing.assert_allclose(out[True][1][1], out[False][1][1], atol=1e-5)
