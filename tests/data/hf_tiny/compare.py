r"""The match figures of the tiny models (our venv, no torch):

  python tests/data/hf_tiny/compare.py

Each family is imported with `python -m encdec_jax.pretrained.import_hf`
(into a temporary directory) and compared with its reference.npz: encoder
states (real positions), teacher-forced logits (max abs difference, and
relative to the largest reference logit), cached decoding against teacher
forcing, and greedy / beam tokens against generate's (up to EOS).
"""

import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax.decoding import beam_search, expand_to_beams, greedy_decode
from encdec_jax.models.contract import init_cache, make_tokens_to_logits
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.pretrained import import_hf

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILIES = ("t5_v11", "t5_v10", "bart", "marian")


def until_eos(rows, eos):
  out = []
  for row in np.asarray(rows).tolist():
    out.append(row[:row.index(eos) + 1] if eos in row else row)
  return out


def compare(name: str, imported: str) -> str:
  config, params, meta = import_hf.load(imported)
  with np.load(os.path.join(HERE, name, "reference.npz")) as npz:
    ref = dict(npz)
  model = EncoderDecoder(config)
  encoded = model.apply({"params": params}, jnp.asarray(ref["input_ids"]),
                        method="encode")
  targets_in = jnp.asarray(ref["decoder_input_ids"])
  logits = np.asarray(model.apply({"params": params}, targets_in, encoded,
                                  method="decode"))
  real = ref["attention_mask"] == 1
  hidden = np.abs(np.asarray(encoded.hidden_BxSxD)
                  - ref["encoder_hidden"])[real].max()
  error = np.abs(logits - ref["logits"]).max()
  relative = error / np.abs(ref["logits"]).max()
  batch, length = targets_in.shape
  source_len = ref["input_ids"].shape[1]
  cache = init_cache(model, batch, length + 5, source_len)
  step = jax.jit(make_tokens_to_logits(model, params, encoded))
  stepped = []
  for t in range(length):
    out, cache = step(targets_in[:, t:t + 1], cache)
    stepped.append(out)
  cached = np.abs(np.asarray(jnp.stack(stepped, 1)) - logits).max()
  eos, steps = meta["eos_id"], int(ref["max_new_tokens"])
  beams = int(ref["num_beams"])
  greedy = greedy_decode(make_tokens_to_logits(model, params, encoded),
                         init_cache(model, batch, steps, source_len), batch,
                         steps, eos, start_id=config.start_id)
  beam, _ = beam_search(
      make_tokens_to_logits(model, params, expand_to_beams(encoded, beams)),
      init_cache(model, batch * beams, steps, source_len), batch, beams,
      steps, eos, length_penalty=0.0, start_id=config.start_id)
  same_greedy = until_eos(greedy, eos) == until_eos(ref["greedy"], eos)
  same_beam = until_eos(beam[:, 0], eos) == until_eos(ref["beam"], eos)
  return (f"{name:7s} encoder {hidden:.1e}  logits {error:.1e} abs "
          f"{relative:.1e} rel  cached-vs-forced {cached:.1e} abs "
          f"{cached / np.abs(logits).max():.1e} rel  greedy "
          f"{'equal' if same_greedy else 'DIFFERENT'}  beam {beams} "
          f"{'equal' if same_beam else 'DIFFERENT'}")


def main() -> int:
  with tempfile.TemporaryDirectory() as tmp:
    for name in FAMILIES:
      out = os.path.join(tmp, name)
      subprocess.run([sys.executable, "-m", "encdec_jax.pretrained.import_hf",
                      os.path.join(HERE, name), out], check=True,
                     stdout=subprocess.DEVNULL)
      print(compare(name, out), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
