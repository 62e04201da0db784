"""Pointer-generator copy head (nn/copy_head.py) on the Transformer and RNN
encoder-decoders: the mixture, its cache, its search, and a copied id that
no training target held."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from encdec_jax import decoding
from encdec_jax.models.contract import (init_cache, make_tokens_to_logits,
                                        shift_right)
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.rnn_seq2seq import RNNEncoderDecoder
from encdec_jax.nn import copy_head
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.recurrent import RNNConfig
from encdec_jax.tasks.losses import cross_entropy_sums

# Right-padded sources and targets (pad 0, EOS 1), vocab 20. Row 0 repeats
# id 7, so the pointer's mass on it adds up.
INPUTS_BxS = jnp.array([[3, 5, 7, 7, 9, 1, 0],
                        [4, 12, 8, 1, 0, 0, 0]], jnp.int32)
TARGETS_BxT = jnp.array([[7, 2, 11, 9, 1, 0],
                         [12, 12, 3, 1, 0, 0]], jnp.int32)
VOCAB = 20


def transformer(**changes):
  return EncoderDecoder(TransformerConfig(
      vocab_size=VOCAB, emb_dim=16, num_heads=2, qkv_dim=16, mlp_dim=32,
      num_encoder_layers=1, num_decoder_layers=2, max_len=16,
      dropout_rate=0.0, attention_dropout_rate=0.0, copy=True,
      **changes))


def rnn(**changes):
  return RNNEncoderDecoder(RNNConfig(
      vocab_size=VOCAB, emb_dim=8, hidden_dim=16, attention_dim=16,
      copy=True, **changes))


MODELS = {"transformer": transformer, "transformer_scan": functools.partial(
    transformer, scan_layers=True), "rnn": rnn}


@functools.cache
def model_and_params(name: str):
  """The model and random params in its layout (a real init compiles for
  seconds, and these tests need only some function)."""
  model = MODELS[name]()
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), INPUTS_BxS, shift_right(TARGETS_BxT)))["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype),
      shapes)
  return model, flax.core.unfreeze(params)


def forward(model, params, inputs_BxS=INPUTS_BxS, targets_BxT=TARGETS_BxT,
            **kwargs):
  """Teacher-forced outputs (jitted): log-probs with copy, else logits."""
  return jax.jit(lambda p: model.apply({"params": p}, inputs_BxS,
                                       shift_right(targets_BxT), **kwargs)
                 )(params)


def without_copy(model):
  return type(model)(model.config.replace(copy=False))


def force_gate(params, bias: float):
  """params with p_gen = sigmoid(bias) at every position."""
  params = flax.core.unfreeze(params)
  gate = params["decoder"]["copy_head"]["gate"]
  gate["kernel"] = jnp.zeros_like(gate["kernel"])
  gate["bias"] = jnp.full_like(gate["bias"], bias)
  return params


@pytest.mark.parametrize("name", ["transformer", "rnn"])
def test_p_gen_one_is_the_plain_model_exactly(name):
  model, params = model_and_params(name)
  params = force_gate(params, 1e4)  # log p_gen = 0, log(1 - p_gen) = -1e4
  log_probs = forward(model, params)
  plain_params = dict(params, decoder={
      k: v for k, v in params["decoder"].items() if k != "copy_head"})
  logits = forward(without_copy(model), plain_params)
  np.testing.assert_array_equal(log_probs, jax.nn.log_softmax(logits))
  # The head is in the decoder: the encoders' params are the same tree.
  plain_shapes = jax.eval_shape(lambda: without_copy(model).init(
      jax.random.key(0), INPUTS_BxS, shift_right(TARGETS_BxT)))["params"]
  assert (jax.tree.structure(plain_shapes) ==
          jax.tree.structure(plain_params))


@pytest.mark.parametrize("name", ["transformer", "rnn"])
def test_p_gen_zero_is_the_pointer_scattered_onto_source_ids(name):
  model, params = model_and_params(name)
  log_probs, state = forward(model, force_gate(params, -1e4),
                             mutable=["intermediates"])
  pointer_BxTxS = state["intermediates"]["decoder"]["copy_head"]["pointer"][0]
  if name == "rnn":  # sown per step (Bx1xS), stacked by the scan on axis 1
    pointer_BxTxS = pointer_BxTxS[:, :, 0]
  probs = np.asarray(jnp.exp(log_probs))
  expected = np.zeros_like(probs)
  for b, ids in enumerate(np.asarray(INPUTS_BxS)):
    for s, i in enumerate(ids):
      expected[b, :, i] += np.asarray(pointer_BxTxS)[b, :, s]
  np.testing.assert_allclose(probs, expected, atol=1e-6)
  assert (probs[0, :, 7] > 0).all() and (probs[:, :, 6] == 0).all()
  pads_Bx1xS = np.asarray(INPUTS_BxS == 0)[:, None, :]
  assert (np.where(pads_Bx1xS, pointer_BxTxS, 0) == 0).all()


def test_loss_on_the_mixture_is_normalised_smoothed_and_finite():
  """cross_entropy_sums applies log_softmax to what it gets: on the
  mixture's log-probs that is the identity (logsumexp 0), so nll is
  -log p(target) of the mixture and label smoothing spreads over it."""
  model, params = model_and_params("transformer")
  params = force_gate(params, 0.3)
  log_probs = forward(model, params)
  np.testing.assert_allclose(jax.nn.logsumexp(log_probs, -1), 0, atol=1e-6)
  weights = (TARGETS_BxT > 0).astype(jnp.float32)
  probs = np.asarray(jnp.exp(log_probs), np.float64)
  for smoothing in (0.0, 0.1):
    sums = cross_entropy_sums(log_probs, TARGETS_BxT, weights, smoothing)
    q = np.full(probs.shape, smoothing / (VOCAB - 1))
    np.put_along_axis(q, np.asarray(TARGETS_BxT)[..., None], 1 - smoothing,
                      axis=-1)
    entropy = -np.sum(np.where(q > 0, q * np.log(np.maximum(q, 1e-30)), 0),
                      -1)
    expected = (-np.sum(q * np.log(probs), -1) - entropy) * np.asarray(weights)
    np.testing.assert_allclose(sums["loss"], expected.sum(), rtol=1e-5)
  nll = -np.log(np.take_along_axis(probs, np.asarray(TARGETS_BxT)[..., None],
                                   -1)[..., 0])
  np.testing.assert_allclose(sums["nll"], (nll * np.asarray(weights)).sum(),
                             rtol=1e-5)

  def loss(p):
    out = model.apply({"params": p}, INPUTS_BxS, shift_right(TARGETS_BxT))
    return cross_entropy_sums(out, TARGETS_BxT, weights, 0.1)["loss"]

  grads = jax.jit(jax.grad(loss))(params)  # most ids are in no source
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert np.abs(grads["decoder"]["copy_head"]["gate"]["kernel"]).sum() > 0


@pytest.mark.parametrize("name", ["transformer", "transformer_scan", "rnn"])
def test_cached_decoding_matches_teacher_forcing(name):
  model, params = model_and_params(name)
  targets_in_BxT = shift_right(TARGETS_BxT)
  encoded = model.apply({"params": params}, INPUTS_BxS, method="encode")
  full_BxTxV = model.apply({"params": params}, targets_in_BxT, encoded,
                           method="decode")
  batch, length = targets_in_BxT.shape
  cache = init_cache(model, batch, length + 2, INPUTS_BxS.shape[1])
  step = jax.jit(make_tokens_to_logits(model, params, encoded))
  stepped = []
  for t in range(length):
    log_probs_BxV, cache = step(targets_in_BxT[:, t:t + 1], cache)
    stepped.append(log_probs_BxV)
  np.testing.assert_allclose(jnp.stack(stepped, 1), full_BxTxV, atol=1e-5)


MAX_LEN = 7


def teacher_forced_scores(model, params, tokens_BxKxT, eos_id, alpha):
  batch, beams, length = tokens_BxKxT.shape
  targets_NxT = jnp.asarray(tokens_BxKxT).reshape(-1, length)
  log_probs_NxTxV = forward(model, params,
                            jnp.repeat(INPUTS_BxS, beams, axis=0), targets_NxT)
  picked_NxT = np.asarray(jnp.take_along_axis(
      log_probs_NxTxV, targets_NxT[..., None], axis=-1)[..., 0])
  ends_NxT = np.asarray(targets_NxT) == eos_id
  after_NxT = np.cumsum(ends_NxT, axis=1) - ends_NxT > 0
  lengths_N = length - after_NxT.sum(axis=1)
  score_N = np.where(after_NxT, 0, picked_NxT).sum(axis=1)
  return (score_N / decoding.gnmt_length_penalty(lengths_N, alpha)).reshape(
      batch, beams)


def test_beam_search_scores_are_teacher_forced_mixture_log_probs():
  model, params = model_and_params("transformer")
  params = force_gate(params, 0.0)  # half copy, half vocabulary
  beams, alpha, eos_id = 3, 0.6, 7  # 7: in row 0's source only

  @jax.jit
  def search(params):
    encoded = decoding.expand_to_beams(
        model.apply({"params": params}, INPUTS_BxS, method="encode"), beams)
    cache = init_cache(model, 2 * beams, MAX_LEN, INPUTS_BxS.shape[1])
    return decoding.beam_search(
        make_tokens_to_logits(model, params, encoded), cache, 2, beams,
        MAX_LEN, eos_id, length_penalty=alpha)

  tokens_BxKxT, scores_BxK = search(params)
  tokens_BxKxT = np.asarray(tokens_BxKxT)
  source_ids = [set(np.asarray(row)) for row in INPUTS_BxS]
  copied = [t in source_ids[b] for b in range(2)
            for t in tokens_BxKxT[b].ravel() if t]
  assert any(copied)  # the hypotheses use copied ids
  assert (tokens_BxKxT == eos_id).any()
  np.testing.assert_allclose(
      scores_BxK, teacher_forced_scores(model, params, tokens_BxKxT, eos_id,
                                        alpha), atol=1e-4, rtol=0)
  assert (np.diff(np.asarray(scores_BxK), axis=1) <= 1e-6).all()


UNSEEN = range(14, 20)  # ids in no training source or target


@functools.cache
def trained_echo(copy: bool):
  """A 1-layer Transformer trained to echo one id of 3..13 ([a, EOS] ->
  [a, EOS]); ids 14..19 never occur in training."""
  model = EncoderDecoder(transformer().config.replace(
      copy=copy, num_decoder_layers=1, emb_dim=32, qkv_dim=32, mlp_dim=64,
      logits_via_embedding=False))
  rng = np.random.default_rng(0)

  def batch(ids):
    return jnp.stack([jnp.asarray(ids, jnp.int32),
                      jnp.ones(len(ids), jnp.int32)], axis=1)

  params = jax.jit(model.init)(jax.random.key(1), batch([3]),
                               shift_right(batch([3])))["params"]
  opt = optax.adam(1e-2)

  @jax.jit
  def train_step(params, opt_state, seq):
    def loss_fn(p):
      out = model.apply({"params": p}, seq, shift_right(seq))
      sums = cross_entropy_sums(out, seq, jnp.ones(seq.shape), 0.0)
      return sums["loss"] / sums["tokens"]
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = opt.init(params)
  for _ in range(100):
    params, opt_state, loss = train_step(params, opt_state,
                                         batch(rng.integers(3, 14, 32)))
  return model, params, float(loss), batch


def test_a_tiny_model_copies_an_id_it_never_saw():
  """Echoing ids it never saw (their embeddings are still at init), the copy
  model writes each through its pointer. (A plain model trained alike writes
  none of them: its logits for them were only ever pushed down. The argmax
  of the teacher-forced outputs equal to the targets is what greedy decoding
  writes: its first input is the start token, its second the first
  output.)"""
  model, params, loss, batch = trained_echo(copy=True)
  assert loss < 0.01
  sources = batch(list(UNSEEN))
  outputs = np.asarray(forward(model, params, sources, sources).argmax(-1))
  np.testing.assert_array_equal(outputs, sources)


@pytest.mark.parametrize("changes, message", [
    (dict(share_embeddings=False, output_vocab_size=30), "one vocabulary"),
    (dict(copy_layer=2), "copy_layer=2"),
    (dict(copy_heads=3), "copy_heads=3"),
])
def test_transformer_config_errors(changes, message):
  with pytest.raises(ValueError, match=message):
    transformer(**changes)


def test_rnn_copy_needs_attention():
  with pytest.raises(ValueError, match="attention='additive'"):
    rnn(attention="none")


def test_pointer_picks_layer_and_heads():
  weights_NxBxHxTxS = jnp.arange(2 * 1 * 3 * 1 * 2, dtype=jnp.float32
                                 ).reshape(2, 1, 3, 1, 2)
  np.testing.assert_array_equal(
      copy_head.pointer_from_cross_attention(weights_NxBxHxTxS, -1, 1),
      weights_NxBxHxTxS[1, :, 0])
  np.testing.assert_allclose(
      copy_head.pointer_from_cross_attention(weights_NxBxHxTxS, 0, 0),
      weights_NxBxHxTxS[0].mean(1))


def test_command_calls_test_values_are_in_no_training_target():
  from encdec_jax.data import command_calls
  splits = command_calls.generate(command_calls.CommandCallsConfig(
      name="tiny", num_train=500, num_validation=50, num_test=50,
      num_train_names=40, num_test_names=20))

  def values(target):  # the name / number / hour of each field
    out = set()
    for field in target.split(" | ")[1:]:
      key, value = field.split(" ")
      if key in ("who", "to"):
        out.add(("name", value))
      elif key in ("amount", "minutes", "late"):
        out.add(("number", int(value)))
      elif key == "time":
        out.add(("hour", int(value.split(":")[0])))
    return out

  train = set().union(*(values(t) for _, t in splits["train"]))
  validation = set().union(*(values(t) for _, t in splits["validation"]))
  test = set().union(*(values(t) for _, t in splits["test"]))
  assert test and not test & train  # out of range: never in training
  assert validation <= train | {v for v in validation if v[0] == "number"}
  assert all(v[1] >= 5000 for v in test if v[0] == "number")
  assert all(v[1] >= 12 for v in test if v[0] == "hour")
  assert not {s for s, _ in splits["validation"]} & {
      s for s, _ in splits["train"]}
  for source, target in splits["test"]:  # every value is in its source
    assert all(str(v[1]) in source for v in values(target) if v[0] != "hour")


def test_test_syllables_are_in_no_template_word():
  from encdec_jax.data import command_calls
  words = " ".join(s + " " + t for s, t in command_calls.TEMPLATES)
  words += " " + " ".join(command_calls.DAYS)
  assert not [s for s in command_calls.TEST_SYLLABLES if s in words]
  assert len(command_calls.TRAIN_SYLLABLES) == 55
  assert set("".join(command_calls.TRAIN_SYLLABLES)) == set(
      command_calls.CONSONANTS + command_calls.VOWELS)


def test_report_table_and_bars(tmp_path):
  import json
  from encdec_jax.reports import copy as copy_report
  runs = {"transformer": ({"family": "transformer"}, "command_calls/default",
                          99.5, 40.0),
          "rnn_copy": ({"family": "rnn", "copy": True},
                       "command_calls/default", 100.0, 99.0),
          "en_de_copy": ({"copy": True}, "number_translation/en_de", None,
                         99.9)}
  for name, (model, dataset, inside, outside) in runs.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(json.dumps(
        {"model": dict(model, dropout_rate=0.0), "dataset": dataset,
         "tokenizer": "sentencepiece", "label_smoothing": 0.1}))
    results = {"test": {"exact_match": outside}, "wall_time_s": 60.0}
    if inside is not None:
      results["validation"] = {"exact_match": inside}
    (tmp_path / name / "results.json").write_text(json.dumps(results))
  (tmp_path / "unfinished").mkdir()
  collected = copy_report.collect(str(tmp_path))
  text = copy_report.table(collected)
  assert ("| `rnn_copy` | rnn, sentencepiece, copy | 100.00 | 99.00 | 1.00 "
          "| 1.0 |") in text
  assert "| `transformer` | transformer, sentencepiece | 99.50 | 40.00" in text
  assert "| `en_de_copy` | transformer, sentencepiece, copy | " \
         "number_translation/en_de | 99.90 | 1.0 |" in text
  copy_report.plot_bars(collected, str(tmp_path / "bars.png"))
  assert (tmp_path / "bars.png").stat().st_size > 1000
