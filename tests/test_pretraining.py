"""The pretraining task: a tiny T5 span-corruption run on the offline corpus
trains packed, reports span accuracy and writes the origin export_hf reads;
its data stream resumes exactly; packed relative positions equal unpacked;
the exported model is Hugging Face's T5 (tests/test_pretraining_export.py
has the logits); a workdir is the start of a fine-tuning run."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import traverse_util

from encdec_jax import starts
from encdec_jax.data import denoising_stream, packing, python_docs
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.pretrained import export_hf
from encdec_jax.starts import t5_scratch
from encdec_jax.tasks import losses, pretraining
from encdec_jax.train import trainer
from experiments import pretrain_span_corruption, t5_finetune

TINY_MODEL = dict(emb_dim=32, qkv_dim=32, num_heads=2, mlp_dim=64,
                  num_encoder_layers=1, num_decoder_layers=1,
                  relative_position_buckets=8,
                  relative_position_max_distance=16)


def tiny_config(arm="span_corruption", steps=4):
  config = pretrain_span_corruption.get_config(arm)
  config.model.update(TINY_MODEL)
  config.update(vocab_size=300, batch_size=8, eval_batch_size=16,
                num_train_steps=steps, warmup_steps=0, eval_every=1000,
                checkpoint_every=1000, num_eval_examples=32,
                test_at_end=False, log_every=2)
  return config


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A 4-step span-corruption run: (workdir, its final metrics)."""
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  trainer.train_and_evaluate(tiny_config(), workdir)
  return workdir


def test_the_corpus_is_english_prose_split_by_paragraph():
  splits = {s: python_docs.split(s) for s in python_docs.SPLITS}
  assert len(splits["train"]) > 1000 and len(splits["validation"]) > 50
  assert not set(splits["train"]) & set(splits["validation"] + splits["test"])
  assert sum(map(len, splits["train"])) > 250_000
  assert all("\n" not in p for p in splits["train"])


def test_span_hits_scores_each_span_with_its_closing_token():
  sentinels = [99, 98, 97]
  # <0> a b <1> c EOS: spans (a b <1>) and (c EOS).
  targets = np.asarray([[99, 5, 6, 98, 7, 1, 0]])
  right = np.ones_like(targets, bool)
  assert pretraining.span_hits(targets, right, sentinels) == (2, 2)
  wrong_close = right.copy()
  wrong_close[0, 3] = False  # the model does not end span 0 on time
  assert pretraining.span_hits(targets, wrong_close, sentinels) == (1, 2)
  wrong_last = right.copy()
  wrong_last[0, 5] = False
  assert pretraining.span_hits(targets, wrong_last, sentinels) == (1, 2)


def test_a_run_trains_packed_t5_and_writes_its_origin(pretrained):
  meta = export_hf.import_hf.read_meta(
      os.path.join(pretrained, export_hf.ORIGIN))
  assert meta["family"] == "t5" and meta["model"]["vocab_size"] == 400
  assert meta["model"]["norm"] == "rmsnorm" and meta["model"]["mlp_gated"]
  hf_files = sorted(os.listdir(os.path.join(pretrained, export_hf.ORIGIN,
                                            "hf")))
  assert hf_files == ["config.json", "generation_config.json",
                      "spiece.model", "tokenizer_config.json"]
  params = export_hf.latest_params(pretrained)
  assert params["decoder"]["logits_dense"]["kernel"].shape == (32, 400)



def test_the_export_writes_the_directory_transformers_was_checked_on(
    pretrained, tmp_path):
  """tests/data/pretrained_tiny/hf (this run's config) holds logits
  transformers recorded (tests/test_pretraining_reference.py): today's
  export writes the same files, config and tensor names and shapes."""
  recorded = os.path.join(os.path.dirname(__file__), "data",
                          "pretrained_tiny", "hf")
  out = str(tmp_path / "hf")
  export_hf.export_hf(pretrained, out)
  assert sorted(os.listdir(out)) == sorted(os.listdir(recorded))
  for name in ("config.json", "generation_config.json",
               "tokenizer_config.json"):
    with open(os.path.join(out, name)) as f, open(
        os.path.join(recorded, name)) as g:
      assert json.load(f) == json.load(g), name
  shapes = [{k: v.shape for k, v in safetensors.numpy.load_file(
      os.path.join(d, "model.safetensors")).items()} for d in (out, recorded)]
  assert shapes[0] == shapes[1]


def test_a_locked_config_fine_tunes_from_the_workdir(pretrained):
  """main.py locks the config: the start still fills in the architecture."""
  config = t5_finetune.get_config("tiny")
  config.init_from = pretrained
  config.lock()
  starts.get(config).configure(config)
  assert config.model.emb_dim == TINY_MODEL["emb_dim"]

def _stream(config, tokenizer, chunks_texts):
  objective = denoising_stream.make_objective(config.pretraining, tokenizer,
                                              config.extra_ids)
  chunk, _, _ = denoising_stream.lengths(objective, config.max_source_length,
                                         config.max_target_length)
  chunks = denoising_stream.Chunks(chunks_texts, tokenizer, chunk)
  return denoising_stream.train_dataset(chunks, objective, config, seed=3)


@pytest.mark.parametrize("arm", pretrain_span_corruption.ARMS)
def test_the_stream_is_packed_full_and_resumes_exactly(pretrained, arm):
  config = tiny_config(arm)
  with open(tokenizer_lib.tokenizer_path(pretrained), "rb") as f:
    tokenizer = tokenizer_lib.SentencePieceTokenizer(f.read())
  texts = python_docs.split("validation")
  it = iter(_stream(config, tokenizer, texts))
  batches = [next(it) for _ in range(3)]
  state = it.get_state()
  later = [next(it) for _ in range(3)]
  resumed = iter(_stream(config, tokenizer, texts))
  resumed.set_state(state)
  for want in later:
    got = next(resumed)
    assert set(got) == set(want)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  first = batches[0]
  assert first["inputs"].shape == (8, config.max_source_length)
  assert first["targets"].shape == (8, config.max_target_length)
  assert first["targets_segment_ids"].max() >= 1
  sentinels = denoising_stream.make_objective(
      config.pretraining, tokenizer, config.extra_ids).sentinel_ids
  real = first["inputs"][first["inputs"] > 0]
  if arm == "span_corruption":  # rows are (nearly) full: packed
    assert np.isin(real, sentinels).any()
    assert (first["inputs"] > 0).mean() > 0.75
  assert real.max() < tokenizer.vocab_size + config.extra_ids


def test_noise_differs_by_epoch_and_not_by_rerun(pretrained):
  config = tiny_config()
  with open(tokenizer_lib.tokenizer_path(pretrained), "rb") as f:
    tokenizer = tokenizer_lib.SentencePieceTokenizer(f.read())
  objective = denoising_stream.make_objective(config.pretraining, tokenizer,
                                              config.extra_ids)
  chunks = denoising_stream.Chunks(python_docs.split("test")[:5], tokenizer,
                                   70)
  pair = lambda position: denoising_stream.noised_pair(
      chunks, objective, 0, position, 2, 64, 14)
  np.testing.assert_array_equal(pair(7)["inputs"], pair(7)["inputs"])
  assert not np.array_equal(pair(7)["inputs"], pair(7 + len(chunks))[
      "inputs"])


@pytest.mark.slow  # ~14 s; packed = unpacked runs by default in test_packing
def test_packed_relative_positions_give_the_unpacked_loss():
  """T5's relative position bias in packed rows: the same loss per pair as
  one pair a row (a row's segments are contiguous, so same-segment
  distances are the unpacked ones; other segments are masked)."""
  config = tiny_config()
  t5_scratch.configure(config)
  arch = t5_scratch.architecture(config)
  model = EncoderDecoder(arch)
  rng = np.random.default_rng(0)
  pairs = [(rng.integers(3, 300, n).tolist() + [1],
            rng.integers(3, 300, m).tolist() + [1])
           for n, m in ((9, 4), (20, 6), (12, 3))]
  packed = packing.pack_pairs(pairs, 2, 64, 14)
  assert max(b["targets_segment_ids"].max() for b in packed) >= 2
  params = model.init(jax.random.key(0), jnp.ones((1, 64), jnp.int32),
                      jnp.ones((1, 14), jnp.int32))["params"]
  loss_fn = jax.jit(losses.seq2seq_loss(model, 0.0))
  packed_nll = sum(
      float(loss_fn(params, {k: jnp.asarray(v) for k, v in batch.items()
                             if k != "example_id"})[1]["nll"])
      for batch in packed)
  unpacked_nll = 0.0
  for inputs, targets in pairs:
    one = {"inputs": jnp.asarray([inputs]), "targets": jnp.asarray([targets]),
           "example_weight": jnp.ones((1,))}
    unpacked_nll += float(loss_fn(params, one)[1]["nll"])
  np.testing.assert_allclose(packed_nll, unpacked_nll, rtol=1e-5)


@pytest.mark.slow  # ~9 s: a pretraining run, then a fine-tuning run on it
def test_a_pretrained_workdir_starts_a_fine_tuning_run(pretrained, tmp_path,
                                                       write_copy_pairs):
  files = write_copy_pairs(tmp_path)
  config = t5_finetune.get_config("tiny")
  config.init_from = pretrained
  config.text_files.update(files)
  # One step at learning rate 0 (the first of a warmup): the params stay
  # the pretrained ones, whatever the new task's data.
  config.update(num_train_steps=1, warmup_steps=10, batch_size=8,
                eval_batch_size=8,
                eval_every=1000, checkpoint_every=1000, num_eval_examples=8,
                num_decode_examples=0, test_at_end=False)
  assert starts.get(config).name == "pretrained_workdir"
  workdir = str(tmp_path / "finetune")
  trainer.train_and_evaluate(config, workdir)
  with open(tokenizer_lib.tokenizer_path(workdir), "rb") as f:
    with open(tokenizer_lib.tokenizer_path(pretrained), "rb") as g:
      assert f.read() == g.read()
  before = traverse_util.flatten_dict(export_hf.latest_params(pretrained))
  after = traverse_util.flatten_dict(export_hf.latest_params(workdir))
  assert set(before) == set(after)
  for key in before:
    np.testing.assert_array_equal(after[key], before[key])


def test_bad_pretraining_configs_say_what_to_change():
  config = tiny_config()
  config.max_target_length = 10
  with pytest.raises(ValueError, match="set it to 14"):
    pretraining.check_config(config)
  config = tiny_config()
  config.pretraining.objective = "mlm"
  with pytest.raises(ValueError, match="objective='mlm' is not known"):
    pretraining.check_config(config)
  config = tiny_config()
  config.model.norm = "layernorm"
  with pytest.raises(ValueError, match="norm='layernorm'.*drop the field"):
    t5_scratch.configure(config)
  config = tiny_config()
  config.model.num_decoder_heads = 1
  with pytest.raises(ValueError, match="no place in a Hugging Face T5"):
    t5_scratch.configure(config)


# transformers' logits of an exported directory on a saved batch, and the
# ids its tokenizer gives the extra ids.
HF_LOGITS = """
import json, sys, numpy as np, torch, transformers
model = transformers.AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1]).eval()
tokenizer = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
batch = {k: torch.tensor(v) for k, v in np.load(sys.argv[2]).items()}
with torch.no_grad():
  np.save(sys.argv[3], model(**batch).logits.numpy())
print(json.dumps(tokenizer.convert_tokens_to_ids(
    ["<extra_id_0>", "<extra_id_99>"])))
"""


def _reference_python() -> str:
  """A Python with transformers: this one, or $HF_REFERENCE_PYTHON."""
  import importlib.util
  if importlib.util.find_spec("transformers") is not None:
    return sys.executable
  python = os.environ.get("HF_REFERENCE_PYTHON")
  if not python:
    pytest.skip("transformers is not installed (or set HF_REFERENCE_PYTHON "
                "to a Python that has it)")
  return python


def test_transformers_loads_the_pretrained_export_with_our_logits(
    pretrained, tmp_path):
  python = _reference_python()
  out = str(tmp_path / "hf")
  export_hf.export_hf(pretrained, out)
  params = export_hf.latest_params(pretrained)
  arch = export_hf.import_hf.config_from_fields(export_hf.import_hf.read_meta(
      os.path.join(pretrained, export_hf.ORIGIN))["model"])
  with open(tokenizer_lib.tokenizer_path(pretrained), "rb") as f:
    tokenizer = tokenizer_lib.SentencePieceTokenizer(f.read())
  inputs = [tokenizer.encode(t)[:12].tolist() + [399, 1]
            for t in python_docs.split("test")[:2]]
  width = max(map(len, inputs))
  ids = np.zeros((2, width), np.int64)
  for row, seq in zip(ids, inputs):
    row[:len(seq)] = seq
  decoder_ids = np.asarray([[0, 399, 17, 5], [0, 399, 8, 398]], np.int64)
  batch = {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64),
           "decoder_input_ids": decoder_ids}
  np.savez(tmp_path / "batch.npz", **batch)
  result = subprocess.run(
      [python, "-c", HF_LOGITS, out, str(tmp_path / "batch.npz"),
       str(tmp_path / "hf_logits.npy")], check=True, capture_output=True,
      text=True, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  # Hugging Face numbers the extra ids as the sentinels are numbered here.
  assert json.loads(result.stdout.strip().splitlines()[-1]) == [399, 300]
  hf_logits = np.load(tmp_path / "hf_logits.npy")
  ours = EncoderDecoder(arch).apply(
      {"params": params}, jnp.asarray(ids, jnp.int32),
      jnp.asarray(decoder_ids, jnp.int32))
  assert hf_logits.shape == ours.shape == (2, 4, 400)
  assert np.abs(hf_logits - ours).max() <= 1e-5 * np.abs(hf_logits).max()
