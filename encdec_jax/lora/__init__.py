"""LoRA: the adapter math and the adapter files. adapters.py holds the
low-rank updates on a params tree and the LoraModel that applies them;
store.py writes and reads exported adapters. How a LoRA run starts, what its
checkpoints hold and how an exported adapter meets its base are the starts'
(starts/lora_base.py, starts/lora_adapter.py); the export workflows are in
encdec_jax/exports.py."""

from encdec_jax.lora.adapters import (LoraModel, content_hash, count, effective,
                                      group_rules, init, merge, resolve)
