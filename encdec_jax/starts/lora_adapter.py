"""An exported adapter on its base: config.lora.adapter (eval and decode).

  python -m encdec_jax.main --config=... --workdir=<the base run> \
      --config.lora.adapter=<dir> --mode=decode --input=... --output=...

--workdir is the base run: its checkpoint is read as it is, the adapter
(written by --mode=export_adapter, lora/store.py) is put beside it, and the
model runs unmerged; another command picks another adapter for the same
base. The adapter's own targets, rank and alpha replace config.lora's (they
are what it was trained with), and it must have been trained on this base
(its content hash) and fit it exactly. Nothing is trained: training an
adapter is config.lora.targets with config.lora.base (starts/lora_base.py).
"""

from encdec_jax.lora import adapters, store
from encdec_jax.starts.base import Start


def _completed(config, base_params, abstract):
  """The base run's params with the adapter beside them."""
  del abstract
  lora = store.load_adapter(config.lora.adapter, base_params, config.lora)
  return {"base": base_params, "lora": lora}


def on(beneath: Start) -> Start:
  """The adapter on a base whose architecture `beneath` gives."""

  def configure(config):
    beneath.configure(config)
    # The adapter's targets, rank and alpha.
    store.configure(config.lora, config.lora.adapter)

  return Start(
      f"lora_adapter on {beneath.name}",
      configure=configure,
      vocab_size=beneath.vocab_size,
      wrap_model=lambda model, config: adapters.LoraModel(model, config.lora),
      completed=_completed,
      read_target=lambda config, manager, abstract: abstract["base"],
      trains=False,
      train_refusal=(
          "config.lora.adapter applies an exported adapter to its base for "
          "--mode=eval or --mode=decode; to train adapters set "
          "config.lora.targets and config.lora.base (the base run) with a "
          "new --workdir, and leave config.lora.adapter empty."),
  )
