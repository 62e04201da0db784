"""Imported Hugging Face models (T5, BART, Marian, fine-tuned 0 steps
through config.init_from) serve as --mode=decode decodes them: their own
tokenizer files shipped, their special ids in serving.json, their
generation settings (BART's and Marian's forced EOS) baked in; greedy and
beam at batch sizes 1, 7 and 32 from one export per family."""

import json
import os
import sys

import pytest

from encdec_jax import serving, serving_export
from encdec_jax.data import imported_tokenizers
from encdec_jax.train import inference, trainer
from experiments import t5_finetune

for _module in ("safetensors", "tokenizers"):
  pytest.importorskip(_module, reason=f"{_module} is not installed: pip "
                      "install -e '.[pretrained]'")
from encdec_jax.pretrained import import_hf  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
# fixture -> (config.tokenizer, the files served, serving.json's ids).
FAMILIES = {
    "t5_v11": ("sentencepiece", {"tokenizer.model": "spiece.model"},
               dict(pad=0, eos=1, decoder_start=0, forced_eos=None)),
    "bart": ("bart_bpe", {"tokenizer.json": "tokenizer.json"},
             dict(pad=1, eos=2, decoder_start=2, bos=0, forced_eos=2)),
    "marian": ("marian", {n: n for n in imported_tokenizers.IMPORTED_FILES[
        "marian"]}, dict(pad=94, eos=0, decoder_start=94, forced_eos=0)),
}
# Short, so that every family reads them in the first bucket (16 tokens):
# one compile per batch size. 37 to decode: batch 32 decodes a full batch
# and a padded one.
WORDS = "the fox a dog is to be or not it".split()
LINES = ([" ".join(WORDS[i:i + 2]) for i in range(9)] + ["", "  "]
         + [" ".join(WORDS[i::4]) for i in range(4)] * 7)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def imported(request, tmp_path_factory, write_copy_pairs):
  """(family, config, workdir, export dir): the fixture imported, fine-tuned
  0 steps (a checkpoint of the imported params) and exported once."""
  family = request.param
  root = tmp_path_factory.mktemp(family)
  pretrained = str(root / "pretrained")
  import_hf.import_hf(os.path.join(DATA, family), pretrained)
  config = t5_finetune.get_config("tiny")
  config.update(init_from=pretrained, tokenizer=FAMILIES[family][0],
                num_train_steps=0, checkpoint_every=1, log_every=1,
                eval_every=1000, num_eval_examples=1, num_decode_examples=0,
                test_at_end=False, eval_batch_size=8, max_decode_length=8)
  config.text_files.update(write_copy_pairs(root, num_train=8))
  workdir = str(root / "run")
  trainer.train_and_evaluate(config, workdir)
  out = str(root / "served")
  serving_export.export_serving(config, workdir, out)
  return family, config, workdir, out


def test_imported_model_serves_as_it_decodes(imported, monkeypatch):
  """One test a family: under pytest-xdist each family's run is set up in
  one worker only."""
  family, config, workdir, out = imported
  with open(os.path.join(out, serving.MANIFEST)) as f:
    manifest = json.load(f)
  kind, files, ids = FAMILIES[family]
  assert manifest["tokenizer"]["kind"] == kind
  assert sorted(manifest["tokenizer"]["files"]) == sorted(files)
  for served_name, fixture_name in files.items():
    with open(os.path.join(out, served_name), "rb") as f, open(
        os.path.join(DATA, family, fixture_name), "rb") as g:
      assert f.read() == g.read(), served_name
  assert {k: manifest["special_ids"][k] for k in ids} == ids
  # The model's generation_config.json, as --mode=decode applies it.
  assert manifest["artifacts"]["greedy"]["forced_eos_token_id"] == \
      ids["forced_eos"]
  if family == "bart":  # the one export that needs `tokenizers` to serve
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import fails
    with pytest.raises(serving.ServingError, match="^this export's BART "
                       "tokenizer needs the 'tokenizers' package: pip "
                       "install tokenizers$"):
      serving.load(out)
    monkeypatch.undo()
  served = serving.load(out)
  for algorithm in ("greedy", "beam"):
    config.decode.algorithm = algorithm
    expected = inference.decode_lines(config, workdir, LINES)
    assert len(set(expected)) > 3, expected  # a model that says something
    for batch_size in (1, 7, 32):
      assert served.translate(LINES, algorithm, batch_size=batch_size) == \
          expected, (algorithm, batch_size)


def test_a_tokenizer_it_cannot_serve_is_refused_at_export():
  with pytest.raises(ValueError, match="^--mode=export_serving serves "
                     "SentencePiece, byte, BART and Marian tokenizers; this "
                     "run's is object: decode it in-process with "
                     "--mode=decode.$"):
    serving_export.tokenizer_files(object())
