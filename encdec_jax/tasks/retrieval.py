"""Sentence vectors from any text encoder, retrieval metrics, nearest neighbours.

Every text model with an encoder embeds: a classifier or a SentenceEmbedder
with its own pooling (`embed` method), an encoder–decoder (Transformer or RNN)
by the mean of its encoder states. Vectors are L2-normalised float32, so a
dot product is the cosine similarity.
"""

import jax
import numpy as np

from encdec_jax import parallel
from encdec_jax.models import pooling


def make_embed_fn(model):
  """jit(params, ids_BxS) -> unit vectors BxD."""

  def embed(params, ids_BxS):
    if hasattr(model, "embed"):
      return model.apply({"params": params}, ids_BxS, method="embed")
    encoded = model.apply({"params": params}, ids_BxS, method="encode")
    if encoded.hidden_BxSxD.shape[1] == 0:
      raise ValueError(f"{type(model).__name__} has no encoder states to "
                       "embed with (a decoder-only LM); use a classifier, an "
                       "embedder or an encoder–decoder.")
    return pooling.l2_normalize(pooling.mean_pool(encoded))

  return jax.jit(embed)


def embed_batches(embed_fn, params, batches, mesh, num_examples: int,
                  field: str = "inputs") -> np.ndarray:
  """float32 NxD vectors of the first `num_examples` rows of `batches`."""
  out = []
  for batch in batches:
    ids = parallel.shared_batch({field: batch[field]}, mesh)[field]
    out.append(np.asarray(parallel.fetch(embed_fn(params, ids))))
  return np.concatenate(out)[:num_examples]


def nearest(queries_QxD: np.ndarray, keys_NxD: np.ndarray, k: int,
            exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """(cosines QxK, indices QxK) of each query's k most similar keys, best
  first; exclude_self drops key i for query i (queries are the keys)."""
  scores_QxN = queries_QxD @ keys_NxD.T
  if exclude_self:
    np.fill_diagonal(scores_QxN, -np.inf)
  k = min(k, keys_NxD.shape[0] - int(exclude_self))
  top_QxK = np.argsort(-scores_QxN, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(scores_QxN, top_QxK, axis=1), top_QxK


def retrieval_metrics(queries_NxD: np.ndarray,
                      keys_NxD: np.ndarray) -> dict:
  """Query i's match is key i: top-1 / top-5 accuracy (%) and mean
  reciprocal rank among all N keys."""
  scores_NxN = queries_NxD @ keys_NxD.T
  correct_N = np.diag(scores_NxN)
  # Rank 1 + the number of keys scoring strictly above the right one.
  rank_N = 1 + np.sum(scores_NxN > correct_N[:, None], axis=1)
  return {"retrieval_top1": 100.0 * float(np.mean(rank_N == 1)),
          "retrieval_top5": 100.0 * float(np.mean(rank_N <= 5)),
          "mrr": float(np.mean(1.0 / rank_N))}
