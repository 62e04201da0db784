r"""Our model's outputs on a fixed batch, for check_export.py to compare with
what transformers computes from the exported directory (run in our venv):

  python tests/data/hf_tiny/our_logits.py EXPORTED_DIR OURS.npz

EXPORTED_DIR is an export_hf output (it is imported again here, without
torch); the batch is its family's reference batch in tests/data/hf_tiny/
(input_ids, attention_mask, decoder_input_ids). Writes those with our
encoder states, logits and greedy tokens (decoding as many steps as the
reference did).
"""

import os
import sys

import jax.numpy as jnp
import numpy as np

from encdec_jax.decoding import greedy_decode
from encdec_jax.models.contract import init_cache, make_tokens_to_logits
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.pretrained import import_hf

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = {"t5": "t5_v11", "bart": "bart", "marian": "marian"}


def main(exported: str, out: str) -> None:
  family, config, params, eos = import_hf.convert(exported)
  name = REFERENCE[family.NAME]
  with np.load(os.path.join(HERE, name, "reference.npz")) as npz:
    ref = dict(npz)
  model = EncoderDecoder(config)
  encoded = model.apply({"params": params}, jnp.asarray(ref["input_ids"]),
                        method="encode")
  logits = model.apply({"params": params},
                       jnp.asarray(ref["decoder_input_ids"]), encoded,
                       method="decode")
  batch, source_len = ref["input_ids"].shape
  steps = int(ref["max_new_tokens"])
  greedy = greedy_decode(make_tokens_to_logits(model, params, encoded),
                         init_cache(model, batch, steps, source_len), batch,
                         steps, eos, start_id=config.start_id)
  np.savez(out, input_ids=ref["input_ids"],
           attention_mask=ref["attention_mask"],
           decoder_input_ids=ref["decoder_input_ids"],
           encoder_hidden=np.asarray(encoded.hidden_BxSxD),
           logits=np.asarray(logits), greedy=np.asarray(greedy),
           eos_id=eos, max_new_tokens=steps)
  print(f"wrote {out}: {family.NAME} logits {tuple(logits.shape)}")


if __name__ == "__main__":
  if len(sys.argv) != 3:
    sys.exit(__doc__)
  main(sys.argv[1], sys.argv[2])
