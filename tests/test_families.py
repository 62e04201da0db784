"""Every model family through the one trainer, the CLI modes and the encoder
checkpoint API: RNN translation, decoder-only LM, sentence embedder and
autoencoder (unit tests of the modules are in test_rnn, test_language_model
and test_autoencoder)."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util
from num2words import num2words

from encdec_jax import checkpoint
from encdec_jax.models import pooling
from encdec_jax.models.contract import Encoded
from encdec_jax.tasks import retrieval
from encdec_jax.tasks import embedding
from encdec_jax.train import experiment, inference, trainer
from experiments import tiny


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
  d = tmp_path_factory.mktemp("data")
  numbers = np.random.default_rng(0).permutation(1000)
  files = {}
  for split, part in (("train", numbers[:900]),
                      ("validation", numbers[900:964]),
                      ("test", numbers[964:])):
    files[split] = str(d / f"{split}.tsv")
    with open(files[split], "w", encoding="utf-8") as f:
      f.writelines(f"{n}\t{num2words(n)}\n" for n in part)
  return files


def _config(arm, text_files=None, **overrides):
  c = tiny.get_config(arm)
  if text_files:
    c.dataset = "text_files"
    c.text_files.update(text_files)
  c.update(overrides)
  return c


def _metrics(workdir, split):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


def _params(config, workdir):
  _, params, _ = inference.restore_latest(config, workdir)
  return traverse_util.flatten_dict(jax.device_get(params), sep="/")


def test_rnn_translation_trains_decodes_and_transfers_its_encoder(
    text_files, tmp_path):
  config = _config("rnn", text_files, num_train_steps=60, eval_every=60,
                   checkpoint_every=30, learning_rate=1e-2)
  workdir = str(tmp_path / "rnn")
  results = trainer.train_and_evaluate(config, workdir)
  train = _metrics(workdir, "train")
  assert train[-1]["loss"] < 0.7 * train[0]["loss"]
  assert results["test"]["num_decoded"] == 36
  lines = ["12", "345", "7"]
  greedy = inference.decode_lines(config, workdir, lines)
  config.decode.update(algorithm="beam", beam_size=1, length_penalty=0.0)
  assert inference.decode_lines(config, workdir, lines) == greedy
  config.decode.update(algorithm="beam", beam_size=3, length_penalty=0.6)
  beams = inference.decode_lines(config, workdir, lines)
  # The lines' beam search by hand: bytes + EOS, decoding.beam_search on the
  # saved RNN, its best hypothesis as text.
  assert beams == _beam_search_by_hand(config, workdir, lines, 3, 0.6)
  assert beams != greedy  # the beam setting is honoured

  # Its encoder starts (frozen) another RNN run; bidirectional-LSTM weights
  # come through bit for bit while the decoder trains.
  tuned = _config("rnn", text_files, num_train_steps=10, eval_every=100,
                  test_at_end=False, init_encoder=workdir)
  tuned_dir = str(tmp_path / "tuned")
  trainer.train_and_evaluate(tuned, tuned_dir)
  before, after = _params(config, workdir), _params(tuned, tuned_dir)
  for name, value in after.items():
    if name.startswith("encoder/"):
      np.testing.assert_array_equal(value, before[name])
  assert any(not np.array_equal(after[n], before[n])
             for n in after if n.startswith("decoder/"))


def _beam_search_by_hand(config, workdir, lines, beam_size, alpha):
  from encdec_jax import decoding
  from encdec_jax.models.contract import (cache_batch_axes, init_cache,
                                          make_tokens_to_logits)
  exp, params, _ = inference.restore_latest(config, workdir)
  eos, max_len = exp.tokenizer.eos_id, config.max_decode_length
  ids = [np.append(exp.tokenizer.encode(line), eos) for line in lines]
  inputs_BxS = np.zeros((len(lines), max(map(len, ids))), np.int32)
  for row, line_ids in enumerate(ids):
    inputs_BxS[row, :len(line_ids)] = line_ids
  encoded = exp.model.apply({"params": params}, inputs_BxS, method="encode")
  source_len = inputs_BxS.shape[1]
  tokens_BxKxT, _ = jax.jit(lambda: decoding.beam_search(
      make_tokens_to_logits(exp.model, params,
                            decoding.expand_to_beams(encoded, beam_size)),
      init_cache(exp.model, len(lines) * beam_size, max_len, source_len),
      len(lines), beam_size, max_len, eos, length_penalty=alpha,
      batch_axes=cache_batch_axes(exp.model, max_len, source_len)))()
  return [exp.tokenizer.decode(t) for t in np.asarray(tokens_BxKxT[:, 0])]


@pytest.mark.slow  # suite time: the default run keeps a sibling test
def test_rnn_encoder_refuses_a_transformer_model(text_files, tmp_path):
  source = str(tmp_path / "rnn")
  trainer.train_and_evaluate(
      _config("rnn", text_files, num_train_steps=2, test_at_end=False),
      source)
  target = _config("transformer", text_files, num_train_steps=2,
                   init_encoder=source)
  with pytest.raises(ValueError, match="family checkpoint 'rnn'"):
    trainer.train_and_evaluate(target, str(tmp_path / "transformer"))


def test_lm_trains_and_continues_prompts(text_files, tmp_path):
  config = _config("lm", text_files, num_train_steps=80, learning_rate=1e-2,
                   eval_every=80, checkpoint_every=80)
  workdir = str(tmp_path / "lm")
  results = trainer.train_and_evaluate(config, workdir)
  assert results["test"]["perplexity"] < 12  # bytes: 259 ids at init
  train = _metrics(workdir, "train")
  assert train[-1]["loss"] < 0.6 * train[0]["loss"]
  outputs = inference.decode_lines(config, workdir, ["twenty", "six hu"])
  assert outputs[0].startswith("twenty") and outputs[1].startswith("six hu")
  assert len(outputs[1]) > len("six hu")
  with pytest.raises(ValueError, match="no encoder states"):
    inference.embed_lines(config, workdir, ["one"])


def test_embedder_learns_pairs_and_embeds_lines(text_files, tmp_path, capsys):
  config = _config("embedding", text_files, num_train_steps=60,
                   learning_rate=3e-3, eval_every=30, checkpoint_every=60,
                   num_eval_examples=-1)
  workdir = str(tmp_path / "embed")
  results = trainer.train_and_evaluate(config, workdir)
  val = _metrics(workdir, "validation")
  # 64 candidates: chance is 1/64 top-1; learning must beat it clearly.
  assert val[-1]["mrr"] > max(val[0]["mrr"], 0.2)
  assert results["test"]["retrieval_top1"] > 100 / 36

  lines = ["twelve", "12", "three hundred", "300"]
  path = str(tmp_path / "vectors.npy")
  capsys.readouterr()  # drop the training log
  vectors = inference.embed_file(config, workdir, _write(tmp_path, lines),
                                 path, neighbours=1)
  saved = np.load(path)
  np.testing.assert_array_equal(saved, vectors)
  assert saved.shape[0] == 4 and saved.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(saved, axis=1), 1.0, atol=1e-5)
  # A row does not depend on the other lines of its batch.
  printed = capsys.readouterr().out.splitlines()
  alone = inference.embed_lines(config, workdir, ["300"])
  np.testing.assert_allclose(alone[0], saved[3], atol=1e-5)
  assert len(printed) == 4 and printed[0].startswith("twelve\t")

  with pytest.raises(ValueError, match=r"\.npy"):
    inference.embed_file(config, workdir, _write(tmp_path, lines), "-")
  with pytest.raises(ValueError, match="--mode=embed"):
    inference.decode_file(config, workdir, _write(tmp_path, lines), "-")


def _write(tmp_path, lines):
  path = tmp_path / "lines.txt"
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return str(path)


def test_translation_model_embeds_by_mean_pooling(text_files, tmp_path):
  config = _config("transformer", text_files, num_train_steps=2,
                   test_at_end=False)
  trainer.train_and_evaluate(config, str(tmp_path))
  lines = ["1", "22", "333"]
  vectors = inference.embed_lines(config, str(tmp_path), lines)
  assert vectors.shape == (3, config.model.emb_dim)
  # By hand: each line alone (no padding), its encoder states averaged over
  # its tokens and EOS, scaled to unit length.
  exp, params, _ = inference.restore_latest(config, str(tmp_path))
  for line, vector in zip(lines, vectors):
    ids = np.append(exp.tokenizer.encode(line), exp.tokenizer.eos_id)
    encoded = exp.model.apply({"params": params}, jnp.asarray(ids[None]),
                              method="encode")
    mean = np.asarray(encoded.hidden_BxSxD[0], np.float64).mean(axis=0)
    np.testing.assert_allclose(vector, mean / np.linalg.norm(mean),
                               rtol=1e-5, atol=1e-6)


def test_autoencoder_trains_and_scores_the_held_out_digit(tmp_path):
  config = _config("autoencoder", data_dir=str(tmp_path / "tfds"),
                   num_train_steps=150, learning_rate=1e-2, eval_every=150,
                   checkpoint_every=150, log_every=50)
  workdir = str(tmp_path / "ae")
  results = trainer.train_and_evaluate(config, workdir)
  train = _metrics(workdir, "train")
  assert train[-1]["loss"] < train[0]["loss"]
  assert 0.0 < results["test"]["mse"] < results["validation"]["mse"] * 3
  # The AUC by hand: each test image's reconstruction MSE from the saved
  # params, and P(a held-out 3 scores above another digit), ties 1/2.
  from encdec_jax.data import digits
  exp, params, _ = inference.restore_latest(config, workdir)
  images_Nx8x8x1, labels_N, _ = digits.load_split_arrays("test",
                                                         config.data_dir)
  x = images_Nx8x8x1.astype(np.float32) / 255
  mse_N = np.mean((np.asarray(jax.nn.sigmoid(
      exp.model.apply({"params": params}, x))) - x) ** 2, axis=(1, 2, 3))
  pos = mse_N[labels_N == config.anomaly_class]
  neg = mse_N[labels_N != config.anomaly_class]
  auc = ((pos[:, None] > neg).mean() + 0.5 * (pos[:, None] == neg).mean())
  assert results["test"]["anomaly_auc"] == pytest.approx(auc, abs=1e-6)
  assert results["test"]["anomaly_auc"] > 0.55  # 0.65 measured; chance 0.5
  assert "anomaly_auc" not in results["validation"]  # no 3s there
  with pytest.raises(ValueError, match="--mode=eval"):
    inference.decode_file(config, workdir, "-", "-")
  with pytest.raises(ValueError, match="images"):
    inference.embed_file(config, workdir, "-", str(tmp_path / "v.npy"))
  meta = checkpoint.read_meta(checkpoint.make_manager(workdir))
  assert meta["encoder"]["vocab"]["kind"] == "none"


def test_autoencoder_image_shape_must_match_the_data(tmp_path):
  config = _config("autoencoder", data_dir=str(tmp_path / "tfds"))
  config.model.image_shape = (28, 28, 1)
  with pytest.raises(ValueError, match=r"image_shape='\(8, 8, 1\)'"):
    experiment.setup(config, str(tmp_path / "w"), train_tokenizer=True)


def test_embedder_encoder_moves_into_a_classifier(tmp_path):
  from encdec_jax.data.tokenizer import ByteTokenizer
  from encdec_jax.models import registry
  from encdec_jax.models.classifier import EncoderClassifier
  from encdec_jax.models.embedder import SentenceEmbedder
  cfg = registry.transformer_config(tiny.get_config().model,
                                    ByteTokenizer.vocab_size)
  ids = jnp.array([[5, 6, 7, 1, 0, 0], [9, 1, 0, 0, 0, 0]], jnp.int32)
  embedder = SentenceEmbedder(cfg, pooling="attention")
  params = embedder.init(jax.random.key(0), ids)["params"]
  vectors = embedder.apply({"params": params}, ids)
  assert vectors.shape == (2, cfg.emb_dim)
  np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)
  assert set(params) == {"encoder", "pooler"}

  spec = checkpoint.encoder_spec(cfg, ByteTokenizer())
  checkpoint.save_encoder(str(tmp_path / "enc"), params["encoder"],
                          spec, ByteTokenizer())
  classifier = EncoderClassifier(cfg, num_classes=3)
  fresh = classifier.init(jax.random.key(1), ids)["params"]
  loaded, report = checkpoint.load_encoder(
      str(tmp_path / "enc"), into=fresh, expected_spec=spec)
  assert not report.left_at_init and not report.differences
  jax.tree.map(np.testing.assert_array_equal, loaded["encoder"],
               params["encoder"])


@pytest.mark.parametrize("overrides, message", [
    (dict(task="translate"), "config.task='translate' is not known"),
    (dict(task="classification"), "family='rnn' does not fit"),
])
def test_task_and_family_mistakes_are_named(text_files, tmp_path, overrides,
                                            message):
  config = _config("rnn", text_files, **overrides)
  with pytest.raises(ValueError, match=message):
    experiment.setup(config, str(tmp_path), train_tokenizer=True)


# Pieces.


def _encoded(hidden, mask):
  return Encoded(hidden_BxSxD=jnp.asarray(hidden, jnp.float32),
                 mask_BxS=jnp.asarray(mask, bool))


def test_attention_pooling_weights_real_tokens_only():
  pool = pooling.AttentionPool()
  hidden = np.random.default_rng(0).normal(size=(2, 5, 4))
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  variables = pool.init(jax.random.key(0), _encoded(hidden, mask))
  variables = jax.tree.map(lambda x: x + 0.5, variables)  # non-zero scores
  out, state = pool.apply(variables, _encoded(hidden, mask),
                          mutable=["intermediates"])
  weights = np.asarray(state["intermediates"]["pooling_weights"][0])
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
  assert np.all(weights[0, 3:] == 0)
  padded = hidden.copy()
  padded[0, 3:] = 100.0  # whatever sits at padding is ignored
  np.testing.assert_allclose(pool.apply(variables, _encoded(padded, mask)),
                             out, rtol=1e-6)
  np.testing.assert_allclose(
      pooling.mean_pool(_encoded(hidden, mask))[0], hidden[0, :3].mean(0),
      rtol=1e-6)


class _Identity:
  """A stand-in embedder: its 'inputs' already are the vectors."""

  def apply(self, variables, x, **kwargs):
    del variables, kwargs
    return pooling.l2_normalize(x)


def test_contrastive_loss_ranks_pairs_and_ignores_padding_rows():
  loss_fn = embedding.contrastive_loss(
      _Identity(), ml_collections.ConfigDict({"contrastive_temperature": 0.05}))
  a = np.eye(4, dtype=np.float32)
  batch = {"inputs": a, "targets": a + 0.01,
           "example_weight": np.array([1, 1, 1, 0], np.float32)}
  loss, sums = loss_fn({}, batch)
  assert float(sums["correct"]) == 6 and float(sums["tokens"]) == 6
  assert float(loss) < 0.01
  swapped = dict(batch, targets=a[[1, 0, 2, 3]])
  assert float(loss_fn({}, swapped)[1]["correct"]) == 2
  # The padding row is neither a query nor a candidate.
  junk = dict(batch, inputs=a.copy(), targets=a.copy() + 0.01)
  junk["inputs"][3] = a[0]
  junk["targets"][3] = a[0]
  np.testing.assert_allclose(loss_fn({}, junk)[0], loss, rtol=1e-6)
  assert np.isfinite(float(loss))


def test_retrieval_metrics_and_nearest_neighbours():
  keys = np.eye(3, dtype=np.float32)
  queries = keys[[0, 2, 1]]
  metrics = retrieval.retrieval_metrics(queries, keys)
  assert metrics["retrieval_top1"] == pytest.approx(100 / 3)
  assert metrics["mrr"] == pytest.approx((1 + 0.5 + 0.5) / 3)
  vectors = pooling.l2_normalize(np.array([[1, 0], [0.9, 0.1], [0, 1]]))
  scores, indices = retrieval.nearest(np.asarray(vectors),
                                      np.asarray(vectors), 1,
                                      exclude_self=True)
  assert indices[:, 0].tolist() == [1, 0, 1]
  assert scores[0, 0] == pytest.approx(float(vectors[0] @ vectors[1]))


def test_number_lm_report_checks_well_formed_numbers():
  import num2words
  from encdec_jax.reports import lm as report_lm
  for n in (0, 15, 21, 101, 38002, 608030, 10**6 + 15, 761773712485130):
    assert report_lm.parse_english(num2words.num2words(n)) == n
  assert report_lm.well_formed("six hundred and eight thousand and thirty")
  for bad in ("six hundred  eight thousand and thirty",  # not num2words'
              "thirty-eight thousandtwo", "twenty-one hundred", ""):
    assert not report_lm.well_formed(bad)
  report = report_lm.sample_report(["one", "one", "two", "twoo"], {"one"})
  assert report == {"samples": 4, "well_formed": 75.0,
                    "new": 100.0 / 3, "distinct": 75.0}
