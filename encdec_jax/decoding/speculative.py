"""Lossless speculative decoding (Leviathan et al. 2023, Chen et al. 2023).

A cheap draft proposes k tokens one at a time; the full model (the target)
scores all of them in one teacher-forced pass over its cache (k + 1 query
positions written at cache_index); the longest prefix the target agrees with
is kept, plus the target's own next token. Greedy: a draft token is accepted
iff it is the target's argmax, so the output is token for token greedy
decoding's. Sampling: draft token d ~ q is accepted with probability
min(1, p(d) / q(d)); at the first rejection the token is drawn from
norm(max(0, p - q)), and after k acceptances from p: each emitted token is
distributed exactly as sampling from the target (p and q both after the
temperature / top-k / top-p filter).

  tokens_BxT, stats = speculative_decode(target, target_cache, draft,
                                         draft_cache, batch, max_len, eos, k)

A model here is a CachedStep: (tokens_BxK, cache) -> (logits_BxKxV, cache).
An index-addressed cache (the Transformer's: keys/values written at
cache_index, nothing past the index ever read) takes k tokens in one call and
is rolled back by resetting cache_index; any other cache (an RNN's carry) is
stepped token by token under lax.scan, keeping the cache after each token, and
rolled back by picking one of them. make_cached_step builds one from a model
of the encode/decode contract and tells which kind it is.

Rows of a batch share the cache index, so a round keeps, for every row, the
smallest number of tokens any unfinished row had accepted (+ 1): every row
still emits only target tokens (greedy: the argmax; sampling: the stopping
point does not depend on the row's later tokens), so this stays lossless; a
batch accepts less than its rows alone would.

Draft: any model of the contract whose decode reads the target's Encoded (a
small decoder trained on the same encoder output), or self_draft(model,
params, n): the first n decoder layers of the same Transformer, its own
embeddings, final norm and logits ("self-speculative"; no extra params).
"""
import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
from jax import lax

from encdec_jax.decoding.loop import PAD_ID, argmax
from encdec_jax.decoding.sampling import check_sampling_args, filter_logits

_INDEXED_LEAVES = {"cached_key", "cached_value", "cache_index", "is_filled"}


@dataclasses.dataclass(frozen=True)
class CachedStep:
  """step(tokens_BxK, cache) -> (float32 logits BxKxV, cache advanced by K).

  index_addressed: K > 1 in one call, and set_cache_index rolls it back;
  otherwise step is only called with K = 1."""
  step: Callable[[jax.Array, Any], tuple[jax.Array, Any]]
  index_addressed: bool


def is_index_addressed(cache: Any) -> bool:
  """True for a cache of attention keys/values and cache_index leaves only
  (the Transformer's), False for anything with other state (an RNN carry)."""
  names = {_leaf_name(path) for path, _ in
           jax.tree_util.tree_flatten_with_path(cache)[0]}
  return "cache_index" in names and names <= _INDEXED_LEAVES


def _leaf_name(path) -> str:
  key = path[-1]
  return str(getattr(key, "key", getattr(key, "name", key)))


def set_cache_index(cache: Any, index: jax.Array) -> Any:
  """Every cache_index leaf (one per layer, and the position embedding's)
  set to `index`: what was written past it is as if never fed."""
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: (jnp.full(leaf.shape, index, leaf.dtype)
                          if _leaf_name(path) == "cache_index" else leaf),
      cache)


def make_cached_step(model, params, encoded, cache) -> CachedStep:
  """The CachedStep of a model of the encode/decode contract (decode=True
  with Bxk tokens), for caches shaped like `cache`."""

  def step(tokens_BxK, cache):
    logits_BxKxV, variables = model.apply(
        {"params": params, "cache": cache}, tokens_BxK, encoded, decode=True,
        mutable=["cache"], method="decode")
    return logits_BxKxV.astype(jnp.float32), variables["cache"]

  return CachedStep(step, is_index_addressed(cache))


def self_draft(model, params, num_layers: int):
  """(draft model, draft params): the first num_layers decoder layers of a
  Transformer EncoderDecoder (or Captioner-free encoder–decoder with the same
  layout), sharing its embeddings, decoder norm and logits. Params are sliced,
  not copied, so this is free inside jit."""
  cfg = model.config
  if not hasattr(cfg, "num_decoder_layers"):
    raise ValueError("draft='self' needs a Transformer encoder–decoder "
                     f"(config.num_decoder_layers); got {type(model).__name__}"
                     ": pass a separate draft model instead.")
  total = cfg.num_decoder_layers
  if not 1 <= num_layers < total:
    raise ValueError(f"A self-speculative draft needs 1 <= layers < "
                     f"{total} (the decoder's), got {num_layers}.")
  draft = model.clone(config=dataclasses.replace(
      cfg, num_decoder_layers=num_layers))
  decoder = dict(params["decoder"])
  if cfg.scan_layers:
    decoder["layers"] = jax.tree.map(lambda x: x[:num_layers],
                                     decoder["layers"])
  else:
    for i in range(num_layers, total):
      del decoder[f"layers_{i}"]
  draft_params = dict(params)
  draft_params["decoder"] = decoder
  if isinstance(params, flax.core.FrozenDict):
    draft_params = flax.core.freeze(draft_params)
  return draft, draft_params


def _feed(model: CachedStep, tokens_BxK, cache, index):
  """Feeds k tokens from position `index` -> (logits BxKxV,
  keep(m) -> the cache holding only the first m of them)."""
  if model.index_addressed:
    logits_BxKxV, cache = model.step(tokens_BxK, cache)
    return logits_BxKxV, lambda m: set_cache_index(cache, index + m)

  def one(cache, tokens_B):
    logits_Bx1xV, cache = model.step(tokens_B[:, None], cache)
    return cache, (logits_Bx1xV[:, 0], cache)

  _, (logits_KxBxV, caches) = lax.scan(one, cache, tokens_BxK.T)
  keep = lambda m: jax.tree.map(
      lambda c: lax.dynamic_index_in_dim(c, m - 1, keepdims=False), caches)
  return jnp.swapaxes(logits_KxBxV, 0, 1), keep


@flax.struct.dataclass
class _State:
  step: jax.Array  # tokens emitted = tokens in the caches
  last_B: jax.Array
  target_cache: Any
  draft_cache: Any
  tokens_BxT: jax.Array
  finished_B: jax.Array
  rounds: jax.Array  # speculative rounds run
  emitted: jax.Array  # tokens those rounds emitted (accepted + 1 each)


def _check_vocabularies(target: CachedStep, target_cache, draft: CachedStep,
                        draft_cache, batch_size: int) -> None:
  """The draft's tokens are the target's ids: another vocabulary would be
  fed to the target as if it were its own (ids past its table clamped)."""
  token_Bx1 = jax.ShapeDtypeStruct((batch_size, 1), jnp.int32)
  vocab = [jax.eval_shape(m.step, token_Bx1, c)[0].shape[-1]
           for m, c in ((draft, draft_cache), (target, target_cache))]
  if vocab[0] != vocab[1]:
    raise ValueError(
        f"the speculative draft predicts {vocab[0]} tokens and the model "
        f"{vocab[1]}: a draft must share the model's vocabulary (be trained "
        "with its tokenizer); use config.decode.draft='self' or such a draft.")


def speculative_decode(target: CachedStep, target_cache: Any,
                       draft: CachedStep, draft_cache: Any, batch_size: int,
                       max_len: int, eos_id: int, k: int, *,
                       rng: jax.Array | None = None, sample: bool = False,
                       temperature: float = 1.0, top_k: int = 0,
                       top_p: float = 1.0, start_id: int = PAD_ID):
  """-> (tokens_BxT as greedy_decode / sample_decode format them, stats).

  stats: rounds (speculative rounds), emitted (tokens they emitted),
  acceptance = (emitted - rounds) / (k * rounds), the share of draft tokens
  kept, and tokens_per_round = emitted / rounds. The last < k + 1 positions
  (where k + 1 would not fit in the caches of max_len) are decoded by the
  target alone, one token a step. sample=False is greedy (token for token
  greedy_decode's); sample=True draws with temperature / top_k / top_p from
  `rng` (a different stream from sample_decode's, the same distribution).
  """
  if k < 1:
    raise ValueError(f"speculative decoding needs k >= 1, got {k}.")
  if sample:
    check_sampling_args(temperature, top_k, top_p)
    if rng is None:
      raise ValueError("sample=True needs rng.")
  _check_vocabularies(target, target_cache, draft, draft_cache, batch_size)
  greedy = not sample or temperature == 0

  def probs(logits_NxV):
    logits_NxV = filter_logits(logits_NxV / temperature, top_k=top_k,
                               top_p=top_p)
    return jax.nn.softmax(logits_NxV, axis=-1)

  def choose(logits_BxV, key):
    if greedy:
      return argmax(logits_BxV).astype(jnp.int32)
    return jax.random.categorical(
        key, jnp.log(probs(logits_BxV)), axis=-1).astype(jnp.int32)

  def emit(state, new_BxM, m, target_cache, draft_cache, rounds, emitted):
    """Writes the first m of new_BxM (pad after EOS / for finished rows)."""
    width = new_BxM.shape[1]
    valid_M = jnp.arange(width) < m
    is_eos_BxM = (new_BxM == eos_id) & valid_M[None]
    eos_before_BxM = jnp.cumsum(is_eos_BxM, axis=1) - is_eos_BxM
    real_BxM = ~state.finished_B[:, None] & valid_M[None] & (
        eos_before_BxM == 0)
    new_BxM = jnp.where(real_BxM, new_BxM, PAD_ID)
    tokens_BxT = lax.dynamic_update_slice(state.tokens_BxT, new_BxM,
                                          (0, state.step))
    last_B = jnp.take_along_axis(new_BxM, jnp.full((batch_size, 1), m - 1),
                                 axis=1)[:, 0]
    finished_B = state.finished_B | jnp.any(is_eos_BxM & real_BxM, axis=1)
    return _State(state.step + m, last_B, target_cache, draft_cache,
                  tokens_BxT, finished_B, rounds, emitted)

  def round_(state: _State) -> _State:
    key = (jax.random.fold_in(rng, state.step) if rng is not None
           else jax.random.key(0))
    n = state.step

    # Draft: k + 1 single steps from the last token (the last only to feed
    # d_k, in case all k are accepted).
    def draft_one(carry, j):
      cache, x_B = carry
      logits_Bx1xV, cache = draft.step(x_B[:, None], cache)
      logits_BxV = logits_Bx1xV[:, 0]
      d_B = choose(logits_BxV, jax.random.fold_in(jax.random.fold_in(key, 0),
                                                  j))
      q_BxV = (jnp.zeros((batch_size, 0)) if greedy else probs(logits_BxV))
      return (cache, d_B), (d_B, q_BxV, None if draft.index_addressed
                            else cache)

    (draft_cache, _), (d_K1xB, q_K1xBxV, draft_caches) = lax.scan(
        draft_one, (state.draft_cache, state.last_B), jnp.arange(k + 1))
    d_BxK = d_K1xB[:k].T

    # Target: last, d_1..d_k in one pass -> k + 1 next-token distributions.
    fed_BxK1 = jnp.concatenate([state.last_B[:, None], d_BxK], axis=1)
    logits_BxK1xV, keep_target = _feed(target, fed_BxK1,
                                       state.target_cache, n)
    if greedy:
      g_BxK1 = argmax(logits_BxK1xV).astype(jnp.int32)
      accept_BxK = d_BxK == g_BxK1[:, :k]
    else:
      p_BxK1xV = probs(logits_BxK1xV.reshape(-1, logits_BxK1xV.shape[-1])
                       ).reshape(logits_BxK1xV.shape)
      q_BxKxV = jnp.swapaxes(q_K1xBxV[:k], 0, 1)
      pick = lambda x_BxKxV: jnp.take_along_axis(
          x_BxKxV, d_BxK[..., None], axis=-1)[..., 0]
      p_d_BxK, q_d_BxK = pick(p_BxK1xV[:, :k]), pick(q_BxKxV)
      u_BxK = jax.random.uniform(jax.random.fold_in(key, 1), d_BxK.shape)
      accept_BxK = u_BxK * q_d_BxK < p_d_BxK  # u < p/q, q > 0 as drawn
    accepted_B = jnp.sum(jnp.cumprod(accept_BxK, axis=1), axis=1)
    if greedy:
      correction_B = jnp.take_along_axis(g_BxK1, accepted_B[:, None],
                                         axis=1)[:, 0]
    else:
      # At the first rejection j: max(0, p_j - q_j); after k: p_k (q_k = 0).
      q_BxK1xV = jnp.concatenate(
          [q_BxKxV, jnp.zeros_like(p_BxK1xV[:, :1])], axis=1)
      at = lambda x_BxK1xV: jnp.take_along_axis(
          x_BxK1xV, accepted_B[:, None, None], axis=1)[:, 0]
      p_BxV, q_BxV = at(p_BxK1xV), at(q_BxK1xV)
      residual_BxV = jnp.maximum(p_BxV - q_BxV, 0.0)
      # p == q leaves nothing (that draft token is then always accepted).
      residual_BxV = jnp.where(
          jnp.sum(residual_BxV, -1, keepdims=True) > 0, residual_BxV, p_BxV)
      correction_B = jax.random.categorical(
          jax.random.fold_in(key, 2), jnp.log(residual_BxV),
          axis=-1).astype(jnp.int32)
    # Every row keeps the batch's smallest accepted + 1 (see module doc).
    m = jnp.min(jnp.where(state.finished_B, k, accepted_B)) + 1
    new_BxK1 = jnp.where(jnp.arange(k + 1) < accepted_B[:, None],
                         jnp.pad(d_BxK, ((0, 0), (0, 1))),
                         correction_B[:, None])
    if draft.index_addressed:
      draft_cache = set_cache_index(draft_cache, n + m)
    else:
      draft_cache = jax.tree.map(
          lambda c: lax.dynamic_index_in_dim(c, m - 1, keepdims=False),
          draft_caches)
    return emit(state, new_BxK1, m, keep_target(m), draft_cache,
                state.rounds + 1, state.emitted + m)

  def single(state: _State) -> _State:
    """One target step, for the tail where k + 1 positions do not fit."""
    logits_Bx1xV, cache = target.step(state.last_B[:, None],
                                      state.target_cache)
    key = (jax.random.fold_in(rng, state.step) if rng is not None
           else jax.random.key(0))
    next_B = choose(logits_Bx1xV[:, 0], key)
    return emit(state, next_B[:, None], 1, cache, state.draft_cache,
                state.rounds, state.emitted)

  def not_done(state):
    return (state.step < max_len) & ~jnp.all(state.finished_B)

  def body(state):
    if k + 1 > max_len:  # no room for a single round
      return single(state)
    return lax.cond(state.step + k + 1 <= max_len, round_, single, state)

  initial = _State(
      step=jnp.array(0, jnp.int32),
      last_B=jnp.full((batch_size,), start_id, jnp.int32),
      target_cache=target_cache, draft_cache=draft_cache,
      tokens_BxT=jnp.full((batch_size, max_len), PAD_ID, jnp.int32),
      finished_B=jnp.zeros((batch_size,), jnp.bool_),
      rounds=jnp.array(0, jnp.int32), emitted=jnp.array(0, jnp.int32))
  final = lax.while_loop(not_done, body, initial)
  rounds = jnp.maximum(final.rounds, 1)
  stats = {"rounds": final.rounds, "emitted": final.emitted,
           "acceptance": (final.emitted - final.rounds) / (k * rounds),
           "tokens_per_round": final.emitted / rounds}
  return final.tokens_BxT, stats
