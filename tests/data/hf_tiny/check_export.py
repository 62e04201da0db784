r"""transformers loads an export_hf directory and computes our logits (run in
the generator's environment: torch + transformers, see make_fixtures.py):

  python tests/data/hf_tiny/our_logits.py EXPORTED_DIR /tmp/ours.npz  # ours
  PEERS/.venv/bin/python tests/data/hf_tiny/check_export.py \
      EXPORTED_DIR /tmp/ours.npz

Loads EXPORTED_DIR with AutoModelForSeq2SeqLM and AutoTokenizer, runs the
batch of ours.npz, and prints the largest encoder-state and logit
differences (absolute and relative to the largest logit) and whether
greedy generate gives our greedy tokens; exits 1 if logits differ by more
than 1e-4 relative or the tokens differ.
"""

import sys

import numpy as np
import torch
import transformers


def until_eos(rows, eos):
  out = []
  for row in np.asarray(rows).tolist():
    out.append(row[:row.index(eos) + 1] if eos in row else row)
  return out


def main(exported: str, ours_path: str) -> int:
  ours = dict(np.load(ours_path))
  model = transformers.AutoModelForSeq2SeqLM.from_pretrained(exported).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
  ids = torch.tensor(ours["input_ids"])
  mask = torch.tensor(ours["attention_mask"])
  with torch.no_grad():
    out = model(input_ids=ids, attention_mask=mask,
                decoder_input_ids=torch.tensor(ours["decoder_input_ids"]))
    encoder = model.get_encoder()(input_ids=ids, attention_mask=mask)
    cfg = model.config
    depths_differ = getattr(cfg, "num_decoder_layers", None) not in (
        None, cfg.num_layers if hasattr(cfg, "num_layers") else None)
    greedy = model.generate(
        input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
        max_new_tokens=int(ours["max_new_tokens"]),
        decoder_start_token_id=cfg.decoder_start_token_id,
        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
        forced_bos_token_id=None, forced_eos_token_id=None,
        no_repeat_ngram_size=0, min_length=0, bad_words_ids=None,
        use_cache=not depths_differ)
  real = ours["attention_mask"] == 1
  logits = out.logits.numpy()
  hidden_error = np.abs(encoder.last_hidden_state.numpy()
                        - ours["encoder_hidden"])[real].max()
  logit_error = np.abs(logits - ours["logits"]).max()
  relative = logit_error / np.abs(logits).max()
  eos = int(ours["eos_id"])
  same_tokens = until_eos(greedy[:, 1:], eos) == until_eos(ours["greedy"],
                                                           eos)
  print(f"{type(model).__name__} + {type(tokenizer).__name__} from "
        f"{exported} (transformers {transformers.__version__}, torch "
        f"{torch.__version__}): encoder states max abs diff "
        f"{hidden_error:.2e}; logits max abs diff {logit_error:.2e} "
        f"(relative {relative:.2e}); greedy tokens equal: {same_tokens}")
  return 0 if relative <= 1e-4 and same_tokens else 1


if __name__ == "__main__":
  if len(sys.argv) != 3:
    sys.exit(__doc__)
  sys.exit(main(sys.argv[1], sys.argv[2]))
