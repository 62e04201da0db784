"""Decoding: greedy, sampling and beam search on scripted / hand-made models
with known distributions and on the real (random) tiny encoder-decoder."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import decoding
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.contract import init_cache, make_tokens_to_logits, shift_right
from encdec_jax.nn.config import TransformerConfig

EOS = 1


def scripted_model(script_BxT, fed_tokens: list):
  """Emits script[:, step]; its cache is the step. Records what it is fed."""

  def tokens_to_logits(tokens_Bx1, step):
    jax.debug.callback(lambda t: fed_tokens.append(np.asarray(t)),
                       tokens_Bx1[:, 0], ordered=True)
    return jax.nn.one_hot(script_BxT[:, step], 10), step + 1

  return tokens_to_logits


def run_greedy(script_BxT, max_len, start_id=0):
  fed_tokens = []
  tokens_to_logits = scripted_model(jnp.asarray(script_BxT), fed_tokens)
  greedy = jax.jit(lambda cache: decoding.greedy_decode(
      tokens_to_logits, cache, len(script_BxT), max_len, EOS,
      start_id=start_id))
  tokens_BxT = greedy(jnp.array(0, jnp.int32))
  jax.effects_barrier()
  return np.asarray(tokens_BxT), np.stack(fed_tokens)


def test_stops_at_eos_pads_after_and_exits_early():
  script_BxT = [[4, 5, EOS, 6, 7, 8, 9],
                [EOS, 3, 3, 3, 3, 3, 3],
                [2, 2, 2, 2, EOS, 5, 5]]
  tokens_BxT, fed_NxB = run_greedy(script_BxT, max_len=7, start_id=7)
  np.testing.assert_array_equal(tokens_BxT, [[4, 5, EOS, 0, 0, 0, 0],
                                             [EOS, 0, 0, 0, 0, 0, 0],
                                             [2, 2, 2, 2, EOS, 0, 0]])
  # Five steps (the last EOS is at step 5), each fed the previous output.
  np.testing.assert_array_equal(fed_NxB, [[7, 7, 7], [4, EOS, 2], [5, 0, 2],
                                          [EOS, 0, 2], [0, 0, 2]])


def test_runs_max_len_steps_without_eos():
  script_BxT = [[4, 5, 6, 7], [3, 3, 3, 3]]
  tokens_BxT, fed_NxB = run_greedy(script_BxT, max_len=4)
  np.testing.assert_array_equal(tokens_BxT, script_BxT)
  assert len(fed_NxB) == 4


def uncached_greedy(model, params, inputs_BxS, max_len, eos_id):
  """Reference: re-run the full teacher-forced forward pass at every step."""
  forward = jax.jit(lambda targets_in_BxT: model.apply(
      {"params": params}, inputs_BxS, targets_in_BxT))
  batch_size = inputs_BxS.shape[0]
  targets_in_BxT = np.zeros((batch_size, max_len), np.int32)  # Start token 0.
  tokens_BxT = np.zeros((batch_size, max_len), np.int32)
  finished_B = np.zeros(batch_size, bool)
  for t in range(max_len):
    # Causal decoder: the not-yet-written future slots cannot matter.
    next_B = np.argmax(forward(targets_in_BxT)[:, t], axis=-1)
    next_B = np.where(finished_B, 0, next_B)
    tokens_BxT[:, t] = next_B
    finished_B |= next_B == eos_id
    if t + 1 < max_len:
      targets_in_BxT[:, t + 1] = next_B
  return tokens_BxT


MAX_LEN = 8  # Decoding length for the real model.


@functools.cache
def tiny_model():
  """(model, params, inputs_BxS): the real encoder-decoder, random params."""
  config = TransformerConfig(
      vocab_size=20, emb_dim=32, num_heads=2, qkv_dim=32, mlp_dim=64,
      num_encoder_layers=1, num_decoder_layers=2, max_len=16,
      logits_via_embedding=False)  # Random tied models mostly echo the input.
  model = EncoderDecoder(config)
  inputs_BxS = jnp.array([[3, 5, 7, 2, 9, 0], [4, 4, 8, 0, 0, 0],
                          [12, 13, 14, 15, 16, 17]], jnp.int32)
  params = model.init(jax.random.key(0), inputs_BxS,
                      jnp.zeros((3, MAX_LEN), jnp.int32))["params"]
  return model, params, inputs_BxS


def real_step_fn(params, inputs_BxS, beam_size=1):
  """(tokens_to_logits, cache) for batch*beam rows of the real model."""
  model, _, _ = tiny_model()
  batch_size, source_len = inputs_BxS.shape
  encoded = model.apply({"params": params}, inputs_BxS,
                        method=EncoderDecoder.encode)
  cache = init_cache(model, batch_size, MAX_LEN, source_len)
  encoded = decoding.expand_to_beams(encoded, beam_size)
  cache = decoding.expand_to_beams(cache, beam_size)
  return make_tokens_to_logits(model, params, encoded), cache


@jax.jit
def real_greedy(params, inputs_BxS, eos_id):
  return decoding.greedy_decode(*real_step_fn(params, inputs_BxS),
                                len(inputs_BxS), MAX_LEN, eos_id)


@functools.partial(jax.jit, static_argnames=("beam_size", "alpha"))
def real_beam(params, inputs_BxS, eos_id, beam_size, alpha):
  return decoding.beam_search(
      *real_step_fn(params, inputs_BxS, beam_size), len(inputs_BxS),
      beam_size, MAX_LEN, eos_id, length_penalty=alpha)


@functools.partial(jax.jit, static_argnames=("top_k",))
def real_sample(params, inputs_BxS, eos_id, rng, top_k):
  return decoding.sample_decode(*real_step_fn(params, inputs_BxS),
                                len(inputs_BxS), MAX_LEN, eos_id, rng,
                                top_k=top_k)


def test_greedy_matches_uncached_argmax_decoding():
  model, params, inputs_BxS = tiny_model()
  # Make the token that row 1 emits at step 2 the EOS: some rows stop early
  # (then emit pad) while others go on.
  no_eos_BxT = uncached_greedy(model, params, inputs_BxS, MAX_LEN, eos_id=-1)
  eos_id = int(no_eos_BxT[1, 2])
  expected_BxT = uncached_greedy(model, params, inputs_BxS, MAX_LEN, eos_id)
  assert eos_id != 0 and len(set(no_eos_BxT.ravel())) > 3  # Non-trivial case.
  assert (expected_BxT[1, 3:] == 0).all()
  assert (expected_BxT != 0).all(axis=1).any()  # Some row never finishes.

  np.testing.assert_array_equal(real_greedy(params, inputs_BxS, -1),
                                no_eos_BxT)
  np.testing.assert_array_equal(real_greedy(params, inputs_BxS, eos_id),
                                expected_BxT)


def real_eos_id(params, inputs_BxS):
  """A token the greedy decoder emits, so that some rows finish early."""
  return int(real_greedy(params, inputs_BxS, -1)[1, 2])


def test_beam_size_1_without_length_penalty_and_top_k_1_are_greedy():
  _, params, inputs_BxS = tiny_model()
  eos_id = real_eos_id(params, inputs_BxS)
  greedy_BxT = np.asarray(real_greedy(params, inputs_BxS, eos_id))
  assert (greedy_BxT == eos_id).any(axis=1).any()  # Both kinds of row.
  assert not (greedy_BxT == eos_id).any(axis=1).all()

  tokens_Bx1xT, scores_Bx1 = real_beam(params, inputs_BxS, eos_id,
                                       beam_size=1, alpha=0.0)
  np.testing.assert_array_equal(tokens_Bx1xT[:, 0], greedy_BxT)
  assert scores_Bx1.shape == (3, 1)
  np.testing.assert_array_equal(
      real_sample(params, inputs_BxS, eos_id, jax.random.key(5), top_k=1),
      greedy_BxT)


def length_penalty(length, alpha):
  return ((5 + length) / 6) ** alpha


def teacher_forced_scores(tokens_BxKxT, inputs_BxS, eos_id, alpha):
  """Sum of the tokens' log-probs up to and including EOS / length penalty."""
  model, params, _ = tiny_model()
  batch_size, beam_size, max_len = tokens_BxKxT.shape
  targets_NxT = jnp.asarray(tokens_BxKxT).reshape(-1, max_len)
  logits_NxTxV = model.apply({"params": params},
                             jnp.repeat(inputs_BxS, beam_size, axis=0),
                             shift_right(targets_NxT))
  logprobs_NxT = jnp.take_along_axis(jax.nn.log_softmax(logits_NxTxV),
                                     targets_NxT[..., None], axis=-1)[..., 0]
  ends_NxT = np.asarray(targets_NxT) == eos_id
  after_eos_NxT = np.cumsum(ends_NxT, axis=1) - ends_NxT > 0
  lengths_N = max_len - after_eos_NxT.sum(axis=1)
  logprob_N = np.where(after_eos_NxT, 0, np.asarray(logprobs_NxT)).sum(axis=1)
  return (logprob_N / length_penalty(lengths_N, alpha)).reshape(
      batch_size, beam_size)


def check_beam_order(tokens_BxKxT, scores_BxK, eos_id):
  """Finished hypotheses best first, then unfinished ones best first."""
  for tokens_KxT, scores_K in zip(np.asarray(tokens_BxKxT),
                                  np.asarray(scores_BxK)):
    finished_K = (tokens_KxT == eos_id).any(axis=1)
    num_finished = finished_K.sum()
    assert finished_K[:num_finished].all()
    for block in scores_K[:num_finished], scores_K[num_finished:]:
      assert (np.diff(block) <= 0).all(), scores_K


def test_beam_scores_are_teacher_forced_log_probs_over_length_penalty():
  _, params, inputs_BxS = tiny_model()
  eos_id = 5  # Rows finish 4, 3 and 1 of 4 hypotheses within MAX_LEN.
  tokens_BxKxT, scores_BxK = real_beam(params, inputs_BxS, eos_id,
                                       beam_size=4, alpha=0.6)
  tokens_BxKxT = np.asarray(tokens_BxKxT)
  assert tokens_BxKxT.shape == (3, 4, MAX_LEN)
  finished_BxK = (tokens_BxKxT == eos_id).any(axis=2)
  assert finished_BxK.any(axis=1).all() and not finished_BxK.all()

  np.testing.assert_allclose(
      scores_BxK, teacher_forced_scores(tokens_BxKxT, inputs_BxS, eos_id, 0.6),
      atol=1e-4, rtol=0)
  check_beam_order(tokens_BxKxT, scores_BxK, eos_id)
  for tokens_KxT in tokens_BxKxT:  # K different hypotheses.
    assert len({tuple(t) for t in tokens_KxT}) == 4
    for t in tokens_KxT:  # Pad after EOS, and only there.
      length = list(t).index(eos_id) + 1 if eos_id in t else MAX_LEN
      assert (t[length:] == 0).all() and (t[:length] != 0).all()


def markov_model(probs_VxV):
  """Next-token probabilities given the last token only; the cache is unused."""
  logits_VxV = jnp.log(jnp.asarray(probs_VxV, jnp.float32))
  logits_VxV = jnp.maximum(logits_VxV, -1e9)  # Finite, as a real model's.
  return lambda tokens_Nx1, cache: (logits_VxV[tokens_Nx1[:, 0]], cache)


def test_beam_search_finds_the_likelier_sequence_greedy_misses():
  a, b, c, d, e, f = range(2, 8)
  probs_VxV = np.zeros((8, 8))
  probs_VxV[0, [a, b]] = [0.6, 0.4]  # From the start token.
  probs_VxV[a, [c, d, e, f]] = [0.3, 0.25, 0.25, 0.2]  # A: uncertain.
  probs_VxV[[EOS, b, c, d, e, f], EOS] = 1  # B: certain end.
  tokens_to_logits = markov_model(probs_VxV)
  cache = jnp.zeros(())

  greedy_1xT = decoding.greedy_decode(tokens_to_logits, cache, 1, 4, EOS)
  np.testing.assert_array_equal(greedy_1xT, [[a, c, EOS, 0]])  # p = 0.18.
  tokens_1xKxT, scores_1xK = jax.jit(
      lambda cache: decoding.beam_search(tokens_to_logits, cache, 1, 2, 4, EOS,
                                         length_penalty=0.6))(cache)
  np.testing.assert_array_equal(tokens_1xKxT,
                                [[[b, EOS, 0, 0], [a, c, EOS, 0]]])
  np.testing.assert_allclose(
      scores_1xK, [[np.log(0.4) / length_penalty(2, 0.6),
                    np.log(0.18) / length_penalty(3, 0.6)]], rtol=1e-5)


def table_model(logits_BxTxV):
  """Logits depend on the row and the step only: cache = (step, table)."""
  logits_BxTxV = jnp.asarray(logits_BxTxV, jnp.float32)

  def tokens_to_logits(tokens_Nx1, cache):
    step, table_NxTxV = cache
    return table_NxTxV[:, step], (step + 1, table_NxTxV)

  return tokens_to_logits, (jnp.array(0, jnp.int32), logits_BxTxV)


def random_logits(key, shape, scale=1.0, eos_logit=-1e9):
  """Random logits, pad never likely (the output would look finished)."""
  logits = scale * np.asarray(jax.random.normal(jax.random.key(key), shape))
  logits[..., 0] = -1e9
  logits[..., EOS] = eos_logit
  return logits


def test_eos_stays_finished_in_greedy_beam_search_and_sampling():
  logits_BxTxV = random_logits(0, (2, 6, 8), scale=2.0)
  logits_BxTxV[0, 2, EOS] = 50.0  # Row 0 ends at step 2, row 1 never.
  tokens_to_logits, cache = table_model(logits_BxTxV)
  decode = lambda fn, cache: jax.jit(fn)(cache)

  greedy_BxT = decode(lambda c: decoding.greedy_decode(
      tokens_to_logits, c, 2, 6, EOS), cache)
  sampled_BxT = decode(lambda c: decoding.sample_decode(
      tokens_to_logits, c, 2, 6, EOS, jax.random.key(0)), cache)
  for tokens_BxT in greedy_BxT, sampled_BxT:
    tokens_BxT = np.asarray(tokens_BxT)
    assert tokens_BxT[0, 2] == EOS and (tokens_BxT[0, 3:] == 0).all()
    assert (tokens_BxT[0, :2] > EOS).all() and (tokens_BxT[1] > EOS).all()

  beam_cache = decoding.expand_to_beams(cache, 3)
  tokens_BxKxT, scores_BxK = decode(lambda c: decoding.beam_search(
      tokens_to_logits, c, 2, 3, 6, EOS, length_penalty=1.0), beam_cache)
  tokens_BxKxT = np.asarray(tokens_BxKxT)
  assert (tokens_BxKxT[0, :, 2] == EOS).all()
  assert (tokens_BxKxT[0, :, 3:] == 0).all()
  assert (tokens_BxKxT[0, :, :2] > EOS).all() and (tokens_BxKxT[1] > EOS).all()
  check_beam_order(tokens_BxKxT, scores_BxK, EOS)
  # Scores from the known distribution: finished hypotheses of 3 tokens,
  # unfinished ones of 6.
  logprobs_BxTxV = np.asarray(jax.nn.log_softmax(logits_BxTxV))
  lengths_B = np.array([3, 6])
  for row, tokens_KxT in enumerate(tokens_BxKxT):
    for k, tokens_T in enumerate(tokens_KxT[:, :lengths_B[row]]):
      logprob = logprobs_BxTxV[row, np.arange(len(tokens_T)), tokens_T].sum()
      np.testing.assert_allclose(
          scores_BxK[row, k], logprob / length_penalty(lengths_B[row], 1.0),
          rtol=1e-5)


def sample_table(logits_BxTxV, seed, **kwargs):
  tokens_to_logits, cache = table_model(logits_BxTxV)
  batch_size, max_len, _ = logits_BxTxV.shape
  return np.asarray(jax.jit(lambda c, rng: decoding.sample_decode(
      tokens_to_logits, c, batch_size, max_len, EOS, rng, **kwargs))(
          cache, jax.random.key(seed)))


def test_sampling_is_reproducible_and_depends_on_the_key():
  logits_BxTxV = random_logits(1, (4, 12, 16), scale=0.3)  # High entropy.
  first = sample_table(logits_BxTxV, seed=0)
  np.testing.assert_array_equal(sample_table(logits_BxTxV, seed=0), first)
  assert (sample_table(logits_BxTxV, seed=1) != first).mean() > 0.5
  assert (first != logits_BxTxV.argmax(-1)).mean() > 0.5  # Not greedy.


@pytest.mark.parametrize("kwargs", [dict(top_k=1), dict(top_p=1e-6),
                                    dict(temperature=0.0),
                                    dict(temperature=1e-4)])
def test_sampling_limits_are_greedy(kwargs):
  logits_BxTxV = random_logits(2, (3, 7, 10), eos_logit=0.5)
  greedy_BxT = decoding.greedy_decode(*table_model(logits_BxTxV), 3, 7, EOS)
  assert (greedy_BxT == EOS).any()  # Rows that finish pad after EOS.
  np.testing.assert_array_equal(sample_table(logits_BxTxV, 3, **kwargs),
                                greedy_BxT)


def nucleus_mask(logits_NxV, top_p):
  """True at the most likely tokens until their mass reaches top_p."""
  probs_NxV = np.asarray(jax.nn.softmax(logits_NxV))
  order_NxV = np.argsort(-probs_NxV, axis=-1)
  sorted_NxV = np.take_along_axis(probs_NxV, order_NxV, axis=-1)
  kept_sorted_NxV = np.cumsum(sorted_NxV, axis=-1) - sorted_NxV < top_p
  kept_NxV = np.zeros_like(kept_sorted_NxV)
  np.put_along_axis(kept_NxV, order_NxV, kept_sorted_NxV, axis=-1)
  return kept_NxV


def test_filter_logits_keeps_the_top_k_and_the_nucleus():
  logits_1xV = jnp.log(jnp.array([[0.05, 0.5, 0.15, 0.3]]))
  kept = lambda **kw: np.isfinite(decoding.filter_logits(logits_1xV, **kw))
  np.testing.assert_array_equal(kept(top_k=2), [[0, 1, 0, 1]])
  np.testing.assert_array_equal(kept(top_k=9), [[1, 1, 1, 1]])
  np.testing.assert_array_equal(kept(top_p=0.4), [[0, 1, 0, 0]])
  np.testing.assert_array_equal(kept(top_p=0.7), [[0, 1, 0, 1]])
  np.testing.assert_array_equal(kept(top_p=0.9), [[0, 1, 1, 1]])
  np.testing.assert_array_equal(kept(top_k=2, top_p=0.9), [[0, 1, 0, 1]])
  np.testing.assert_allclose(decoding.filter_logits(logits_1xV, top_k=2)[0, 1],
                             logits_1xV[0, 1])  # Kept logits are unchanged.


@pytest.mark.parametrize("top_k,top_p", [(3, 1.0), (0, 0.5)])
def test_samples_stay_in_the_top_k_and_the_nucleus(top_k, top_p):
  logits_BxTxV = random_logits(3, (8, 10, 12))
  tokens_BxT = sample_table(logits_BxTxV, 4, top_k=top_k, top_p=top_p,
                            temperature=0.5)
  tempered_BxTxV = logits_BxTxV / 0.5
  if top_k:
    kth_BxT = np.sort(tempered_BxTxV, axis=-1)[..., -top_k]
    allowed_BxTxV = tempered_BxTxV >= kth_BxT[..., None]
  else:
    allowed_BxTxV = nucleus_mask(tempered_BxTxV, top_p)
  assert allowed_BxTxV.sum(-1).max() < 12  # The filter removes something.
  picked_BxT = np.take_along_axis(allowed_BxTxV, tokens_BxT[..., None],
                                  axis=-1)[..., 0]
  assert picked_BxT.all()
  assert len(set(tokens_BxT.ravel())) > 3  # And still samples.


@pytest.mark.parametrize("kwargs", [dict(temperature=-1.0), dict(top_k=-1),
                                    dict(top_k=1.5), dict(top_p=0.0),
                                    dict(top_p=1.5)])
def test_sampling_arguments_are_checked(kwargs):
  with pytest.raises(ValueError, match=list(kwargs)[0]):
    decoding.sample_decode(None, None, 1, 4, EOS, jax.random.key(0), **kwargs)


def test_expand_and_gather_beams_leave_0d_leaves_alone():
  tree = {"rows_Bx2": jnp.array([[0, 1], [2, 3]]), "index": jnp.array(7),
          "flag": jnp.array(True)}
  expanded = decoding.expand_to_beams(tree, 3)
  np.testing.assert_array_equal(expanded["rows_Bx2"],
                                [[0, 1]] * 3 + [[2, 3]] * 3)
  assert expanded["index"].shape == () and expanded["flag"].shape == ()
  expanded["rows_Bx2"] = jnp.arange(12).reshape(6, 2)
  gathered = decoding.gather_beams(expanded, jnp.array([[2, 2, 0], [1, 0, 0]]))
  np.testing.assert_array_equal(
      gathered["rows_Bx2"], [[4, 5], [4, 5], [0, 1], [8, 9], [6, 7], [6, 7]])
  assert gathered["index"] == 7 and gathered["flag"].shape == ()

  with pytest.raises(ValueError, match="expand_to_beams"):
    decoding.beam_search(None, tree, batch_size=2, beam_size=3, max_len=4,
                         eos_id=EOS)
  with pytest.raises(ValueError, match="beam_size"):
    decoding.beam_search(None, tree, batch_size=2, beam_size=0, max_len=4,
                         eos_id=EOS)


# --- scan_layers: the cache of a scanned stack is layers-first ---------------


def _stack_layers(params):
  """layers_{i}/... of each stack -> layers/... with a leading layer axis, the
  param tree of the same model with scan_layers=True."""
  out = {}
  for part, tree in params.items():
    tree = dict(tree)
    names = sorted((k for k in tree if k.startswith("layers_")),
                   key=lambda k: int(k.split("_")[1]))
    if names:
      layers = [tree.pop(name) for name in names]
      tree["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    out[part] = tree
  return out


@functools.cache
def scan_models():
  """(plain, scanned, params, stacked params, inputs, eos_id): 2 decoder
  layers; eos_id is a token greedy decoding emits, so some rows stop early."""
  kwargs = dict(vocab_size=20, emb_dim=16, num_heads=2, qkv_dim=16,
                mlp_dim=32, num_encoder_layers=1, num_decoder_layers=2,
                max_len=16, logits_via_embedding=False)
  plain = EncoderDecoder(TransformerConfig(**kwargs))
  scanned = EncoderDecoder(TransformerConfig(**kwargs, scan_layers=True))
  inputs_BxS = jnp.array([[3, 5, 7, 2, 9, 1], [4, 4, 8, 1, 0, 0]], jnp.int32)
  params = plain.init(jax.random.key(2), inputs_BxS,
                      jnp.zeros((2, MAX_LEN), jnp.int32))["params"]
  no_eos = uncached_greedy(plain, params, inputs_BxS, MAX_LEN, eos_id=-1)
  return (plain, scanned, params, _stack_layers(params), inputs_BxS,
          int(no_eos[1, 2]))


@pytest.mark.parametrize("rows,decode", [
    (2, dict(algorithm="greedy")),
    (2, dict(algorithm="sample", temperature=2.0)),
    (2, dict(algorithm="beam", beam_size=3, length_penalty=0.6)),
    # 1 row x 2 beams: as many cache rows as the scanned cache has layers.
    (1, dict(algorithm="beam", beam_size=2, length_penalty=0.0))])
def test_scan_layers_decodes_the_same_tokens(rows, decode):
  import ml_collections
  from encdec_jax.decoding.config import make_decode_fn
  from encdec_jax.models.contract import cache_batch_axes
  plain, scanned, params, stacked, inputs_BxS, eos_id = scan_models()
  inputs_BxS = inputs_BxS[:rows]
  leaves = jax.tree_util.tree_leaves_with_path(
      cache_batch_axes(scanned, MAX_LEN, inputs_BxS.shape[1]),
      is_leaf=lambda axis: axis is None)
  # The keys are layers x rows x ...; the per-layer index is shared by rows.
  assert {path[-1].key: axis for path, axis in leaves} == {
      "cached_key": 1, "cached_value": 1, "cache_index": None,
      "is_filled": None}
  config = ml_collections.ConfigDict(dict(decode=decode,
                                          max_decode_length=MAX_LEN))
  rng = jax.random.key(1)
  want = make_decode_fn(plain, config, eos_id)(params, inputs_BxS, rng)
  got = make_decode_fn(scanned, config, eos_id)(stacked, inputs_BxS, rng)
  np.testing.assert_array_equal(got, want)
  assert len(set(np.asarray(want).ravel())) >= 3  # not one repeated token
