"""LoRA adapters for the encoder-decoders: see adapters.py (the math and the
params tree), training.py (the trainer's hooks, adapter-only checkpoints) and
store.py (export_adapter / load_adapter / merge_adapter)."""

from encdec_jax.lora.adapters import (LoraModel, content_hash, count, effective,
                                      group_rules, init, merge, resolve, wrap)
