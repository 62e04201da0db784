"""The starting point is chosen once (encdec_jax/starts): each combination of
init_from / init_encoder / lora.targets / lora.adapter gives its start, the
ones that do not go together are refused in one line, and an exported
adapter is refused by --mode=train before anything is written."""

import json
import os

import pytest

from encdec_jax import starts
from encdec_jax.train import trainer
from experiments import tiny


def _config(**fields):
  c = tiny.get_config()
  for key, value in fields.items():
    if key.startswith("lora_"):
      c.lora[key[5:]] = value
    else:
      c[key] = value
  return c


@pytest.mark.parametrize("fields, name", [
    ({}, "scratch"),
    ({"init_encoder": "enc"}, "encoder_transfer"),
    ({"init_from": "imp"}, "hf_import"),
    ({"lora_targets": ("q",), "lora_base": "b"}, "lora_base on scratch"),
    ({"lora_targets": ("q",), "lora_base": "b", "init_from": "imp"},
     "lora_base on hf_import"),
    ({"lora_adapter": "a"}, "lora_adapter on scratch"),
    ({"lora_adapter": "a", "init_from": "imp"}, "lora_adapter on hf_import"),
])
def test_each_combination_gives_its_start(fields, name):
  assert starts.get(_config(**fields)).name == name


@pytest.mark.parametrize("fields, other", [
    ({"init_encoder": "enc", "init_from": "imp"}, "config.init_from"),
    ({"init_encoder": "enc", "lora_targets": ("q",), "lora_base": "b"},
     "config.lora.targets"),
    ({"init_encoder": "enc", "lora_adapter": "a"}, "config.lora.adapter"),
])
def test_starts_that_do_not_go_together_are_refused_in_one_line(fields,
                                                                other):
  with pytest.raises(ValueError) as e:
    starts.get(_config(**fields))
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"config.init_encoder and {other} both say "
                            "where the weights come from; set one")


def test_an_exported_adapter_is_not_trained_and_nothing_is_written(tmp_path):
  adapter = tmp_path / "adapter"
  adapter.mkdir()
  (adapter / "adapter.json").write_text(json.dumps(
      {"targets": ["encoder/.*/attention/query"], "rank": 2, "alpha": 4.0,
       "init_std": 0.0, "base_hash": "0", "step": 1}))
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=r"config.lora.adapter applies an "
                     r"exported adapter .* leave config.lora.adapter empty"):
    trainer.train_and_evaluate(_config(lora_adapter=str(adapter)),
                               str(workdir))
  assert not os.path.exists(workdir)
