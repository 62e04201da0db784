"""Speculative decoding is lossless: token for token greedy decoding on tiny
models of every family with a cache (Transformer encoder–decoder, plain and
scanned, T5-style relative positions, decoder-only LM, RNN seq2seq,
captioners) and on a tiny trained model; its sampling keeps the target's
distribution (chi-square against a Markov chain's exact probabilities)."""
import functools
import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from scipy import stats

from encdec_jax import decoding
from encdec_jax.decoding import speculative
from encdec_jax.decoding.config import make_decode_fn
from encdec_jax.models.captioner import Captioner, CaptionerConfig
from encdec_jax.models.contract import init_cache, shift_right
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.language_model import DecoderOnlyLM
from encdec_jax.models.rnn_seq2seq import RNNEncoderDecoder
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.recurrent import RNNConfig
from encdec_jax.tasks import losses

MAX_LEN = 10
INPUTS_BxS = jnp.array([[3, 5, 7, 2, 9, 1], [4, 4, 8, 1, 0, 0],
                        [12, 13, 14, 15, 16, 1]], jnp.int32)


def config(max_len=MAX_LEN, **decode):
  return ml_collections.ConfigDict(dict(decode=decode,
                                        max_decode_length=max_len))


def check_equals_greedy(model, params, inputs, eos_id, draft=None,
                        runs=((3, "self"),), max_len=MAX_LEN):
  """runs: (k, config.decode.draft) pairs."""
  rng = jax.random.key(0)
  want = np.asarray(make_decode_fn(model, config(max_len), eos_id)(
      params, inputs, rng))
  for k, name in runs:
    got = make_decode_fn(model, config(max_len, algorithm="speculative", k=k,
                                       draft=name), eos_id, draft=draft)(
        params, inputs, rng)
    np.testing.assert_array_equal(got, want, err_msg=f"k={k} draft={name}")
  return want


def emitted_eos(model, params, inputs):
  """A token greedy decoding emits mid-way, as EOS, so rows stop early."""
  tokens = make_decode_fn(model, config(), -1)(params, inputs,
                                               jax.random.key(0))
  return int(tokens[1, 3])


def transformer(seed=0, **changes):
  kwargs = dict(vocab_size=20, emb_dim=16, num_heads=2, qkv_dim=16,
                mlp_dim=32, num_encoder_layers=1, num_decoder_layers=3,
                max_len=16, logits_via_embedding=False)
  model = EncoderDecoder(TransformerConfig(**dict(kwargs, **changes)))
  params = model.init(jax.random.key(seed), INPUTS_BxS,
                      jnp.zeros((3, MAX_LEN), jnp.int32))["params"]
  return model, params


@pytest.mark.parametrize("changes,runs", [
    ({}, ((1, "self"), (3, "self:2"), (MAX_LEN, "self"))),
    pytest.param(dict(scan_layers=True), ((2, "self:2"),),
                 marks=pytest.mark.slow),
    # T5: relative position bias, RMSNorm, gated MLP, unscaled attention.
    pytest.param(dict(relative_position_buckets=8,
                      position_embedding="none", norm="rmsnorm",
                      mlp_gated=True, scale_attention=False),
                 ((3, "self"),), marks=pytest.mark.slow)])
def test_transformer_self_draft_equals_greedy(changes, runs):
  model, params = transformer(**changes)
  eos = emitted_eos(model, params, INPUTS_BxS)
  out = check_equals_greedy(model, params, INPUTS_BxS, eos, runs=runs)
  if eos != 0:
    assert (out == 0).any()  # some rows did stop at EOS


def test_separate_draft_model_equals_greedy():
  model, params = transformer()
  draft = transformer(seed=5, num_decoder_layers=1)
  check_equals_greedy(model, params, INPUTS_BxS,
                      emitted_eos(model, params, INPUTS_BxS), draft=draft,
                      runs=((3, "model"),))


def test_decoder_only_lm_equals_greedy():
  cfg = TransformerConfig(vocab_size=20, emb_dim=16, num_heads=2,
                          qkv_dim=16, mlp_dim=32, num_encoder_layers=2,
                          max_len=16, causal=True)
  dummy_Bx1 = jnp.zeros((3, 1), jnp.int32)
  init = lambda m, seed: m.init(jax.random.key(seed), dummy_Bx1, jnp.zeros(
      (3, MAX_LEN), jnp.int32))["params"]
  model = DecoderOnlyLM(cfg)
  draft_model = DecoderOnlyLM(cfg.replace(num_encoder_layers=1))
  params = init(model, 0)
  check_equals_greedy(model, params, dummy_Bx1, 7,
                      draft=(draft_model, init(draft_model, 1)),
                      runs=((3, "model"),))
  with pytest.raises(ValueError, match="prompts"):
    make_decode_fn(model, config(algorithm="speculative"), prompted=True)


def test_rnn_seq2seq_equals_greedy():
  """An RNN carry cannot be rolled back by an index: the scan path."""
  cfg = RNNConfig(vocab_size=20, emb_dim=8, hidden_dim=16, attention_dim=16)
  model = RNNEncoderDecoder(cfg)
  init = lambda seed: model.init(jax.random.key(seed), INPUTS_BxS, jnp.zeros(
      (3, MAX_LEN), jnp.int32))["params"]
  params = init(0)
  draft = (model, init(3))  # the same shape, other weights
  assert not speculative.is_index_addressed(init_cache(model, 3, 4, 6))
  check_equals_greedy(model, params, INPUTS_BxS,
                      emitted_eos(model, params, INPUTS_BxS), draft=draft,
                      runs=((2, "model"),))


@pytest.mark.slow  # suite time: the default run keeps a sibling test
@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_captioner_equals_greedy(family):
  canvas = (10, 36, 1)
  if family == "rnn":
    dec = RNNConfig(vocab_size=20, share_embeddings=False,
                    bidirectional=False, emb_dim=8, hidden_dim=16,
                    attention_dim=8)
  else:
    dec = TransformerConfig(vocab_size=20, share_embeddings=False,
                            emb_dim=16, qkv_dim=16, mlp_dim=32, num_heads=2,
                            num_decoder_layers=2, max_len=16)
  model = Captioner(CaptionerConfig(decoder=dec, image_shape=canvas,
                                    conv_features=(4, 8, 8)))
  images = jax.random.uniform(jax.random.key(1), (2,) + canvas)
  init = lambda seed: model.init(jax.random.key(seed), images, jnp.zeros(
      (2, MAX_LEN), jnp.int32))["params"]
  params = init(0)
  check_equals_greedy(model, params, images, 7, draft=(model, init(1)),
                      runs=((3, "model"),))


@functools.cache
def trained_reverser():
  """A tiny Transformer like the main job's, trained (a few hundred Adam
  steps) to reverse digit strings: a draft of its first layer then agrees
  with it most of the time, so rounds accept several tokens."""
  vocab, length, batch = 12, 6, 64
  model, params = transformer(num_encoder_layers=2, num_decoder_layers=3,
                              emb_dim=32, qkv_dim=32, mlp_dim=64,
                              vocab_size=vocab, dropout_rate=0.0,
                              attention_dropout_rate=0.0)

  def make_batch(key):
    inputs = jax.random.randint(key, (batch, length), 2, vocab)
    targets = jnp.concatenate([inputs[:, ::-1], jnp.ones((batch, 1),
                                                         jnp.int32)], 1)
    return {"inputs": inputs, "targets": targets,
            "example_weight": jnp.ones(batch)}

  loss_fn = losses.seq2seq_loss(model, 0.0)
  tx = optax.adam(3e-3)

  @jax.jit
  def train(params):
    def step(carry, key):
      params, opt = carry
      grads, _ = jax.grad(loss_fn, has_aux=True)(params, make_batch(key))
      updates, opt = tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), opt), None
    keys = jax.random.split(jax.random.key(1), 300)
    return jax.lax.scan(step, (params, tx.init(params)), keys)[0][0]

  return model, train(params), make_batch(jax.random.key(99))["inputs"][:8]


@pytest.mark.slow  # suite time: the default run keeps a sibling test
def test_trained_model_equals_greedy_and_accepts_drafts():
  model, params, inputs = trained_reverser()
  out = check_equals_greedy(model, params, inputs, 1, runs=((4, "self:2"),))
  assert (out == 1).any(axis=1).all()  # it learnt to stop

  @jax.jit
  def run(params, inputs):
    encoded = model.apply({"params": params}, inputs, method="encode")
    draft, draft_params = speculative.self_draft(model, params, 2)
    cache = init_cache(model, 1, MAX_LEN, inputs.shape[1])
    dcache = init_cache(draft, 1, MAX_LEN, inputs.shape[1])
    return speculative.speculative_decode(
        speculative.make_cached_step(model, params, encoded, cache), cache,
        speculative.make_cached_step(draft, draft_params, encoded, dcache),
        dcache, 1, MAX_LEN, 1, 3)

  _, st = run(params, inputs[:1])
  assert 0 < float(st["acceptance"]) <= 1
  # Rounds advance past EOS within a round: emitted >= the real tokens.
  assert MAX_LEN >= int(st["emitted"]) >= int((out[0] != 0).sum())
  assert int(st["rounds"]) < int(st["emitted"])  # fewer full-model passes


# --- sampling: the target's distribution, exactly ----------------------------

V, SEQ = 4, 3


def markov(logits_VxV, index_addressed):
  """A CachedStep: next-token logits depend on the token fed only. Its cache
  is a position index, or (not index-addressed) the last token fed."""
  logits_VxV = jnp.asarray(logits_VxV, jnp.float32)

  def step(tokens_BxK, cache):
    if index_addressed:
      return logits_VxV[tokens_BxK], {"cache_index": cache["cache_index"]
                                      + tokens_BxK.shape[1]}
    return logits_VxV[tokens_BxK], {"last": tokens_BxK[:, -1]}

  return speculative.CachedStep(step, index_addressed)


def exact_probs(logits_VxV, temperature, top_k):
  probs = np.asarray(jax.nn.softmax(decoding.filter_logits(
      jnp.asarray(logits_VxV) / temperature, top_k=top_k), -1))
  out = {}
  for seq in itertools.product(range(V), repeat=SEQ):
    p, last = 1.0, 0
    for t in seq:
      p, last = p * probs[last, t], t
    out[seq] = p
  return out


@pytest.mark.parametrize("index_addressed,k,temperature,top_k", [
    (True, 2, 1.0, 0), (True, 1, 0.7, 3), (False, 2, 1.0, 0)])
def test_sampling_keeps_the_target_distribution(index_addressed, k,
                                                temperature, top_k):
  rng = np.random.default_rng(0)
  target_VxV = 1.5 * rng.standard_normal((V, V))
  draft_VxV = 1.5 * rng.standard_normal((V, V))  # a poor draft: rejections
  batch, draws = 2, 6000
  cache = ({"cache_index": jnp.zeros((), jnp.int32)} if index_addressed
           else {"last": jnp.zeros((batch,), jnp.int32)})

  @jax.jit
  def sample(keys):
    def one(key):
      return speculative.speculative_decode(
          markov(target_VxV, index_addressed), cache,
          markov(draft_VxV, index_addressed), cache, batch, SEQ, -1, k,
          rng=key, sample=True, temperature=temperature, top_k=top_k)
    return jax.vmap(one)(keys)

  tokens, st = sample(jax.random.split(jax.random.key(0), draws))
  assert 0 < float(st["acceptance"].mean()) < 1
  seqs = np.asarray(tokens).reshape(-1, SEQ)
  want = exact_probs(target_VxV, temperature, top_k)
  codes = (seqs * V ** np.arange(SEQ)[::-1]).sum(1)
  observed = np.bincount(codes, minlength=V ** SEQ)
  expected = np.array([want[s] for s in itertools.product(range(V),
                                                          repeat=SEQ)])
  assert observed[expected == 0].sum() == 0  # nothing outside top-k
  keep = expected > 0
  n_expected = len(seqs) * expected[keep]
  chi2 = ((observed[keep] - n_expected) ** 2 / n_expected).sum()
  # Samples of two rows of one draw are independent given the start token.
  assert chi2 < stats.chi2.ppf(1 - 1e-4, keep.sum() - 1), chi2


def test_identical_draft_accepts_everything():
  logits = np.random.default_rng(1).standard_normal((V, V))
  cache = {"cache_index": jnp.zeros((), jnp.int32)}
  _, st = jax.jit(lambda key: speculative.speculative_decode(
      markov(logits, True), cache, markov(logits, True), cache, 2, 9, -1, 2,
      rng=key, sample=True))(jax.random.key(0))
  assert float(st["acceptance"]) == 1.0 and int(st["rounds"]) == 3


def test_config_errors():
  model, _ = transformer()
  with pytest.raises(ValueError, match="draft"):
    make_decode_fn(model, config(algorithm="speculative", draft="big"))
  with pytest.raises(ValueError, match="k must be"):
    make_decode_fn(model, config(algorithm="speculative", k=0))
  with pytest.raises(ValueError, match="layers"):
    speculative.self_draft(model, None, 3)
