"""The copy study's remedies: supervised copy (tasks/losses.py) and value
substitution (data/value_substitution.py, in the grain pipeline)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from encdec_jax.data import number_translation, pipeline, value_substitution
from encdec_jax.data import tokenizer as tok
from encdec_jax.models.contract import shift_right
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.rnn_seq2seq import RNNEncoderDecoder
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.recurrent import RNNConfig
from encdec_jax.tasks import losses, translation

VOCAB = 20
BATCH = {"inputs": np.array([[3, 5, 7, 7, 9, 1, 0],
                             [4, 12, 8, 1, 0, 0, 0]], np.int32),
         "targets": np.array([[7, 2, 11, 9, 1, 0],
                              [12, 12, 3, 1, 0, 0]], np.int32),
         "example_weight": np.ones((2,), np.float32)}
MODELS = {
    "transformer": lambda: EncoderDecoder(TransformerConfig(
        vocab_size=VOCAB, emb_dim=16, num_heads=2, qkv_dim=16, mlp_dim=32,
        num_encoder_layers=1, num_decoder_layers=1, max_len=16, copy=True)),
    "rnn": lambda: RNNEncoderDecoder(RNNConfig(
        vocab_size=VOCAB, emb_dim=8, hidden_dim=16, attention_dim=16,
        copy=True)),
}


def test_copy_supervision_of_a_tiny_case():
  # Source 5 7 7 EOS pad; target 7 (copyable: two positions), 9 (not in the
  # source), EOS (never supervised), pad.
  inputs_BxS = jnp.array([[5, 7, 7, 1, 0]])
  targets_BxT = jnp.array([[7, 9, 1, 0]])
  pointer_BxTxS = jnp.array([[[0.1, 0.2, 0.3, 0.4, 0.0]] * 4])
  p_gen_BxT = jnp.array([[0.2, 0.5, 0.5, 0.5]])
  weights_BxT = jnp.array([[1.0, 1.0, 1.0, 0.0]])
  sums = jax.jit(losses.copy_supervision_sums)(
      pointer_BxTxS, p_gen_BxT, inputs_BxS, targets_BxT, weights_BxT)
  np.testing.assert_allclose(sums["copy_loss"],
                             -np.log(0.5) - np.log(0.8), rtol=1e-6)
  assert float(sums["copy_tokens"]) == 1.0


@pytest.mark.parametrize("name", [
    "transformer", pytest.param("rnn", marks=pytest.mark.slow)])
def test_copy_supervision_adds_its_weighted_term_and_is_absent_when_off(name):
  model = MODELS[name]()
  params = jax.jit(model.init)(jax.random.key(0), BATCH["inputs"],
                               shift_right(BATCH["targets"]))["params"]

  @jax.jit
  def losses_and_copy_sums(params):
    off = losses.seq2seq_loss(model, 0.1)(params, BATCH)
    on = losses.seq2seq_loss(model, 0.1, 0.5)(params, BATCH)
    _, state = model.apply({"params": params}, BATCH["inputs"],
                           shift_right(BATCH["targets"]),
                           mutable=["intermediates"])
    copy = losses.copy_supervision_sums(
        *losses.copy_intermediates(state), BATCH["inputs"], BATCH["targets"],
        losses.token_weights(BATCH))
    return off, on, copy

  (off, off_sums), (on, on_sums), copy = losses_and_copy_sums(params)
  assert float(copy["copy_tokens"]) == 4  # 7, 9 | 12, 12 (2 is UNK)
  np.testing.assert_allclose(
      on, off + 0.5 * copy["copy_loss"] / off_sums["tokens"], rtol=1e-5)
  assert float(on_sums["nll"]) == pytest.approx(float(off_sums["nll"]))


STATS = value_substitution.corpus_stats(
    [{"source": f"send {i} dollars to na{i % 7}", "target": f"pay {i}"}
     for i in range(200)] +
    [{"source": "send it to Mepa", "target": "pay Mepa"}])
PAIR = {"source": "send 3120 dollars to mepa at 14:18",
        "target": "pay | to mepa | amount 3120 | time 14:18"}


def substitute(example, index, probability=1.0, seed=0):
  return value_substitution.substitute(
      example, index, stats=STATS, probability=probability,
      max_frequency=0.01, seed=seed)


def test_value_substitution_redraws_shared_values_alike_on_both_sides():
  outs = [substitute(PAIR, i) for i in range(50)]
  for out in outs:
    source, target = out["source"].split(), out["target"].split()
    number, name, time = source[1], source[4], source[6]
    assert (source[0], source[2], source[3], source[5]) == (
        "send", "dollars", "to", "at")  # common words stay
    assert target == ["pay", "|", "to", name, "|", "amount", number, "|",
                      "time", time]
    assert number.isdigit() and name.isalpha() and name.islower()
    hours, minutes = time.split(":")
    assert hours.isdigit() and minutes.isdigit()
    assert set(name) <= set(STATS.alphabets[1])
  # Fresh values of new lengths (up to 2 more characters) and beginnings.
  numbers = {out["source"].split()[1] for out in outs}
  assert len(numbers) > 40 and max(map(len, numbers)) == 6
  assert {n[0] for n in numbers} >= set("56789")
  # Deterministic per (seed, index); another seed, other values.
  assert outs == [substitute(PAIR, i) for i in range(50)]
  assert outs != [substitute(PAIR, i, seed=1) for i in range(50)]
  assert substitute(PAIR, 3, probability=0.0) == PAIR
  # Values inside punctuation (a call syntax) are words too.
  out = substitute({"source": "Send 3,120 dollars to Mepa.",
                    "target": "pay(to=Mepa, amount=3,120)"}, 1)
  name, number = out["source"].split()[4][:-1], out["source"].split()[1]
  assert out["target"] == f"pay(to={name}, amount={number})"
  assert number != "3,120" and "," in number and name[0].isupper()
  # A value written with capitals keeps its case class.
  out = substitute({"source": "send it to Mepa", "target": "pay Mepa"}, 0)
  assert out["source"].split()[-1][0].isupper()


def test_pipeline_substitutes_training_values_and_resumes_exactly():
  pairs = [{"source": f"send {i} dollars", "target": f"pay {i}"}
           for i in range(40)]
  config = ml_collections.ConfigDict(dict(
      max_source_length=24, max_target_length=24, overlong="truncate",
      bucket_boundaries=(8, 16, 24), batch_size=4, substitute_values=1.0,
      substitute_max_frequency=0.01))
  t = tok.ByteTokenizer()
  plain_config = ml_collections.ConfigDict(dict(config))
  plain_config.substitute_values = 0.0
  plain = iter(pipeline.train_dataset(pairs, t, plain_config, seed=3))
  it = iter(pipeline.train_dataset(pairs, t, config, seed=3))
  first, plain_first = next(it), next(plain)
  assert (first["example_id"] == plain_first["example_id"]).all()
  assert not np.array_equal(first["inputs"], plain_first["inputs"])
  for row in range(4):  # the same number on both sides
    source = t.decode(first["inputs"][row]).split()
    assert t.decode(first["targets"][row]).split() == ["pay", source[1]]
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  resumed = iter(pipeline.train_dataset(pairs, t, config, seed=3))
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["inputs"], want["inputs"])
    np.testing.assert_array_equal(got["targets"], want["targets"])


@pytest.mark.parametrize("changes, message", [
    (dict(substitute_values=1.5), "substitute_values=1.5 is the probability"),
    (dict(copy_supervision=1.0), "add --config.model.copy=true"),
])
def test_config_errors(changes, message):
  config = ml_collections.ConfigDict(dict(
      model=dict(copy=False), substitute_values=0.0, copy_supervision=0.0,
      eval_metrics=("exact_match",), required_fields=()))
  config.update(changes)
  with pytest.raises(ValueError, match=message):
    translation.check_config(config)


def test_substitution_leaves_the_main_job_unchanged():
  # English and German number words share no word: the switch is a no-op
  # there, so the main job trains on the same batches with it on.
  numbers = number_translation.sample_numbers(10**6, 3000, seed=0)
  pairs = [{"source": s, "target": t} for s, t in
           number_translation._render_chunk("en", "de", 10**6, numbers)]
  stats = value_substitution.corpus_stats(pairs)
  assert all(value_substitution.substitute(
      p, i, stats=stats, probability=1.0, max_frequency=0.01, seed=0) == p
             for i, p in enumerate(pairs))


def test_edge_report_averages_seeds_over_three_splits(tmp_path):
  import json
  from encdec_jax.reports import copy_edge
  runs = {"copy": (99.0, 98.0, 10.0), "copy_seed1": (99.0, 96.0, 20.0),
          "copy_both": (100.0, 99.0, 97.0)}
  for name, (inside, outside, novel) in runs.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(
        json.dumps({"dataset": "command_calls/default"}))
    (tmp_path / name / "results.json").write_text(json.dumps(
        {"validation": {"exact_match": inside},
         "test": {"exact_match": outside}, "wall_time_s": 120.0}))
    (tmp_path / name / "novel_prefix.json").write_text(
        json.dumps({"exact_match": novel}))
  (tmp_path / "en_de").mkdir()  # another dataset: not in this table
  (tmp_path / "en_de" / "config.json").write_text(
      json.dumps({"dataset": "number_translation/en_de"}))
  (tmp_path / "en_de" / "results.json").write_text("{}")
  arms = copy_edge.collect(str(tmp_path))
  text = copy_edge.table(arms)
  assert "| `copy` | 2 | 99.00 ± 0.00 | 97.00 ± 1.41 | 15.00 ± 7.07 | 2.0 |" \
      in text
  assert "| `copy_both` | 1 | 100.00 | 99.00 | 97.00 | 2.0 |" in text
