"""Where a run's architecture, tokenizer and first params come from: one
module per way of starting, each a `Start` (starts/base.py).

  start             config                          module
  scratch           (none of the below)             scratch.py
  encoder transfer  init_encoder                    encoder_transfer.py
  Hugging Face      init_from                       hf_import.py
  a whole workdir   init_from (a trained workdir)   pretrained_workdir.py
  new T5 (v1.1)     hf_export="t5"                  t5_scratch.py
  LoRA on a base    lora.targets + lora.base        lora_base.py
  adapter on base   lora.adapter (eval, decode)     lora_adapter.py

`get(config)` is the one place that reads those fields to decide. The LoRA
starts sit on the start that gives the architecture (scratch, or
init_from: LoRA on an imported model); every other combination is refused
here, in one line. A new way of starting is one new module with a
`Start(...)` and its line in `get`.
"""

from encdec_jax.starts import (encoder_transfer, hf_import, lora_adapter,
                               lora_base, pretrained_workdir, scratch,
                               t5_scratch)
from encdec_jax.starts.base import Start


def _named(config) -> list[str]:
  """The start fields the config sets, as a user writes them."""
  lora = config.get("lora") or {}
  named = [f"config.{f}" for f in ("init_from", "init_encoder")
           if config.get(f)]
  named += [f"config.lora.{f}" for f in ("targets", "adapter")
            if lora.get(f)]
  return named


def get(config) -> Start:
  """The start `config` describes, or a one-line ValueError for fields
  that do not go together."""
  named = _named(config)
  if "config.init_encoder" in named and len(named) > 1:
    other = [n for n in named if n != "config.init_encoder"][0]
    raise ValueError(
        f"config.init_encoder and {other} both say where the weights come "
        "from; set one: init_encoder transfers an encoder into a model "
        "trained from scratch, init_from starts the whole model from an "
        "import, config.lora.* adapts a trained base.")
  architecture = hf_import.START if config.get("init_from") else scratch.START
  if config.get("init_from") and pretrained_workdir.is_workdir(
      config.init_from):
    architecture = pretrained_workdir.START
  elif not config.get("init_from") and config.get("hf_export"):
    architecture = t5_scratch.START
  if "config.lora.adapter" in named:
    return lora_adapter.on(architecture)
  if "config.lora.targets" in named:
    return lora_base.on(architecture)
  if "config.init_encoder" in named:
    return encoder_transfer.START
  return architecture
