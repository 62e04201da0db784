"""An imported tiny T5 v1.1 fine-tuned with the normal trainer
(experiments/t5_finetune.py, --config.init_from): it trains on a TSV file
(loss falls), checkpoints, resumes, decodes, and exports back to Hugging
Face format with the fine-tuned weights. Needs the `pretrained` extra.

That transformers loads the export with the same logits is checked outside
the suite (torch): tests/data/hf_tiny/check_export.py, see docs/pretrained.md.
"""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

for _module in ("safetensors", "tokenizers"):
  pytest.importorskip(_module, reason=f"{_module} is not installed: "
                      "pip install -e '.[pretrained]'")

from encdec_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from encdec_jax.decoding import greedy_decode  # noqa: E402
from encdec_jax.models.contract import (init_cache,  # noqa: E402
                                        make_tokens_to_logits)
from encdec_jax.models.encoder_decoder import EncoderDecoder  # noqa: E402
from encdec_jax.pretrained import export_hf, import_hf, stacking  # noqa: E402
from encdec_jax.starts import hf_import  # noqa: E402
from encdec_jax.pretrained import hf as hf_lib  # noqa: E402
from encdec_jax.train import inference, param_groups, trainer  # noqa: E402
from experiments import t5_finetune  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
def _config(pretrained: str, files: dict, steps: int):
  config = t5_finetune.get_config()
  config.init_from = pretrained
  config.text_files.update(files)
  config.update(num_train_steps=steps, batch_size=16, eval_batch_size=8,
                learning_rate=3e-3, warmup_steps=2, log_every=2,
                eval_every=1000, checkpoint_every=4, num_eval_examples=8,
                num_decode_examples=4, test_at_end=False,
                max_source_length=32, max_target_length=16,
                max_decode_length=8, bucket_boundaries=(16, 32))
  config.model.update(dropout_rate=0.0, attention_dropout_rate=0.0)
  return config


def _train_losses(workdir: str) -> dict:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


@pytest.mark.slow  # suite time: the default run keeps a sibling test
def test_fine_tune_checkpoint_resume_decode_export(tmp_path, write_copy_pairs):
  pretrained = str(tmp_path / "pretrained")
  import_hf.import_hf(os.path.join(DATA, "t5_v11"), pretrained)
  files = write_copy_pairs(tmp_path)
  workdir = str(tmp_path / "run")

  # Trains from the imported params, with T5's own tokenizer.
  trainer.train_and_evaluate(_config(pretrained, files, 8), workdir)
  with open(os.path.join(workdir, "tokenizer.model"), "rb") as f, open(
      os.path.join(DATA, "t5_v11", "spiece.model"), "rb") as g:
    assert f.read() == g.read()
  losses = _train_losses(workdir)
  assert losses[2] > losses[4] > losses[6] > losses[8], losses
  assert losses[8] < 0.9 * losses[2], losses
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == "8"

  # Resumes from step 8 (not from the import) and trains on.
  trainer.train_and_evaluate(_config(pretrained, files, 12), workdir)
  losses = _train_losses(workdir)
  assert set(losses) == {2, 4, 6, 8, 10, 12}
  assert losses[12] < losses[8]

  # The fine-tuned params: not the imported ones, and they decode as the
  # trainer's --mode=decode does.
  tuned = export_hf.latest_params(workdir)
  config, imported, meta = import_hf.load(pretrained)
  flat_tuned = traverse_util.flatten_dict(tuned)
  flat_imported = traverse_util.flatten_dict(imported)
  assert flat_tuned.keys() == flat_imported.keys()
  assert all(not np.array_equal(flat_tuned[k], flat_imported[k])
             for k in flat_imported)
  lines = ["copy: the lazy dog house", "copy: garden play small test"]
  decoded = inference.decode_lines(_config(pretrained, files, 12), workdir,
                                   lines)
  tokenizer = tokenizer_lib.SentencePieceTokenizer(
      open(os.path.join(workdir, "tokenizer.model"), "rb").read())
  model = EncoderDecoder(config)
  ids = [tokenizer.encode(line).tolist() + [1] for line in lines]
  inputs_BxS = np.zeros((2, max(map(len, ids))), np.int32)
  for row, seq in enumerate(ids):
    inputs_BxS[row, :len(seq)] = seq
  encoded = model.apply({"params": tuned}, jnp.asarray(inputs_BxS),
                        method="encode")
  tokens_BxT = greedy_decode(make_tokens_to_logits(model, tuned, encoded),
                             init_cache(model, 2, 8, inputs_BxS.shape[1]), 2,
                             8, meta["eos_id"])
  assert decoded == [tokenizer.decode(row) for row in np.asarray(tokens_BxT)]

  # Exported: the fine-tuned weights under the original names, with the
  # original config and tokenizer files.
  out = str(tmp_path / "exported")
  assert export_hf.main(["export_hf", workdir, out]) == 0
  exported = hf_lib.read_tensors(os.path.join(out, "model.safetensors"))
  original = hf_lib.read_tensors(os.path.join(DATA, "t5_v11",
                                              "model.safetensors"))
  assert sorted(exported) == sorted(original)
  for file in ("config.json", "spiece.model", "tokenizer_config.json"):
    with open(os.path.join(out, file), "rb") as f, open(
        os.path.join(DATA, "t5_v11", file), "rb") as g:
      assert f.read() == g.read(), file
  again = import_hf.convert(out)[2]
  for key, value in traverse_util.flatten_dict(again).items():
    np.testing.assert_array_equal(value, flat_tuned[key], err_msg=str(key))


def test_init_from_refuses_what_the_trainer_cannot_fine_tune(
    tmp_path, write_copy_pairs):
  files = write_copy_pairs(tmp_path)
  for family, kind in (("bart", "bart_bpe"), ("marian", "marian")):
    imported = str(tmp_path / family)
    import_hf.import_hf(os.path.join(DATA, family), imported)
    config = _config(imported, files, 2)  # T5's config.tokenizer
    with pytest.raises(ValueError, match=f"set --config.tokenizer={kind}$"):
      hf_import.configure(config)
    config.tokenizer = kind
    hf_import.configure(config)  # fine-tunes with its own ids
    meta = import_hf.read_meta(imported)["model"]
    assert config.model.pad_id == meta["pad_id"] != 0
  t5_dir = str(tmp_path / "t5")
  import_hf.import_hf(os.path.join(DATA, "t5_v10"), t5_dir)
  config = _config(t5_dir, {}, 2)
  config.model.emb_dim = 64
  with pytest.raises(ValueError, match=r"config.model.emb_dim=64 but the "
                     r"imported model .* has 12"):
    hf_import.configure(config)
  config = _config(t5_dir, {}, 2)
  config.tokenizer = "bytes"
  with pytest.raises(ValueError, match="set --config.tokenizer=sentencepiece"):
    hf_import.configure(config)


def test_scan_layers_stacks_the_imported_layers():
  flat = {("encoder", "layers_0", "mlp", "kernel"): np.zeros((2, 3)),
          ("encoder", "layers_1", "mlp", "kernel"): np.ones((2, 3)),
          ("encoder", "encoder_norm", "scale"): np.ones(2)}
  stacked = stacking.stack_layers(flat)
  assert stacked[("encoder", "layers", "mlp", "kernel")].shape == (2, 2, 3)
  back = stacking.unstack_layers(stacked)
  assert back.keys() == flat.keys()
  for key, value in flat.items():
    np.testing.assert_array_equal(back[key], value)


def test_experiment_arms_group_freeze_and_unfreeze_the_t5_params():
  params = import_hf.convert(os.path.join(DATA, "t5_v11"))[2]
  frozen = param_groups.make_plan(t5_finetune.get_config("frozen_encoder"),
                                  params)
  mask = frozen.trainable_mask(0)
  assert mask and all(mask[k] == (k[0] == "decoder") for k in mask)
  split = param_groups.make_plan(t5_finetune.get_config("finetune"), params)
  assert split.groups == ("decoder", "encoder")
  assert split.settings["encoder"]["learning_rate"] == 1e-4
  assert split.settings["decoder"]["learning_rate"] == 3e-4
  ulmfit = t5_finetune.get_config("ulmfit")
  ulmfit.layer_groups = ("decoder", "encoder_top", "encoder_1", "encoder_0",
                         "embeddings")  # this T5 has 2 encoder layers
  plan = param_groups.make_plan(ulmfit, params)
  assert plan.start_steps == {"decoder": 0, "encoder_top": 100,
                              "encoder_1": 200, "encoder_0": 300,
                              "embeddings": 400}
  assert plan.labels[("encoder", "relative_position_bias",
                      "embedding")] == "encoder_top"
  assert plan.labels[("encoder", "embedder", "token_embed",
                      "embedding")] == "embeddings"
