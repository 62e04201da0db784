"""Beam search with finished and live hypotheses kept apart (T5X / Flax WMT).

Scores. A hypothesis of n tokens (EOS included, the start token not) with
log-probability logprob (the sum of its tokens' log_softmax, in float32)
scores

  score = logprob / gnmt_length_penalty(n, alpha),
  gnmt_length_penalty(n, alpha) = ((5 + n) / 6) ** alpha      (GNMT, Wu+ 2016)

alpha=0 ranks by log-probability; larger alpha favours longer outputs.

Search. Each step expands the K live hypotheses by every token and takes the
2K best expansions by log-probability. Those of the K best that end in EOS move
to the finished set, which keeps the K best finished by score; the K best
expansions not ending in EOS stay live (at most K of 2K end in EOS, so the live
set stays full). Only the K best count as finished, as in classic beam search,
so beam_size=1 with length_penalty=0 is greedy decoding. The search stops after
max_len steps, or once every batch row holds K finished hypotheses and none of
them is worse than the best score a live hypothesis could still reach: its
log-probability (which can only fall) over the largest length penalty it could
still get (at max_len for alpha >= 0).

scoring="hf" is Hugging Face generate's beam search instead (transformers
5.x, _beam_search), for models that ship their settings:
  score = logprob / n ** length_penalty       (n as above: EOS in, start out)
hypotheses that reach max_len without EOS finish there too (the K best
expansions of the last step, ranked with the others by score), and a row
stops taking finished hypotheses once
  early_stopping=True     it holds K finished ones;
  early_stopping=False    it holds K and the best live log-probability over
                          n ** length_penalty at the current n is no better
                          than its worst (HF's heuristic: not a bound when
                          length_penalty > 0);
  early_stopping="never"  the same at n = max_len when length_penalty > 0
                          (a true bound), else at the current n;
the search ends when every row has stopped, or at max_len. `rules`
(decoding.rules) rewrite each step's log-softmax before the expansions are
ranked, as generate's logits processors do (either scoring). Hypotheses
without any possible continuation are -inf here and -1e9 in transformers:
the two differ only when fewer than 2K expansions of a row are finite.
"""
from typing import Any

import flax
import jax
import jax.numpy as jnp
from jax import lax

from encdec_jax.decoding.loop import PAD_ID, TokensToLogits


SCORINGS = ("gnmt", "hf")
BUCKETS = 8  # with length_axes: reorder the filled positions in 8ths
EARLY_STOPPING = (False, True, "never")


def gnmt_length_penalty(length, alpha: float):
  """((5 + length) / 6) ** alpha: a hypothesis scores logprob / this."""
  return ((5.0 + length) / 6.0) ** alpha


def hf_length_penalty(length, alpha: float):
  """length ** alpha (transformers): a hypothesis scores logprob / this."""
  return jnp.asarray(length, jnp.float32) ** alpha


def check_beam_args(scoring: str, early_stopping) -> None:
  """One-line errors for a scoring or early_stopping beam_search lacks."""
  if scoring not in SCORINGS:
    raise ValueError(f"beam scoring {scoring!r} is not known; use one of "
                     f"{SCORINGS}.")
  if not any(early_stopping is e or (isinstance(e, str) and
                                     early_stopping == e)
             for e in EARLY_STOPPING):
    raise ValueError(f"early_stopping={early_stopping!r}: use True, False "
                     "or 'never'.")
  if scoring == "gnmt" and early_stopping is not False:
    raise ValueError(f"early_stopping={early_stopping!r} is HF's rule: it "
                     "needs scoring='hf' (GNMT scoring stops exactly).")


def _rows_axes(tree: Any, batch_axes: Any) -> Any:
  """batch_axes, or by default axis 0 of every leaf but 0-d ones (None)."""
  if batch_axes is None:
    return jax.tree.map(lambda x: 0 if jnp.ndim(x) else None, tree)
  return batch_axes


def _map_rows(fn, tree: Any, batch_axes: Any) -> Any:
  """fn(leaf, axis) for each leaf with batch rows; leaves of axis None as
  they are. batch_axes has tree's structure (None marking shared leaves)."""
  return jax.tree.map(
      lambda axis, x: x if axis is None else fn(x, axis),
      _rows_axes(tree, batch_axes), tree, is_leaf=lambda a: a is None)


def expand_to_beams(tree: Any, beam_size: int, batch_axes: Any = None) -> Any:
  """Repeats every row of each array leaf beam_size times (B -> B*K rows).

  Row b of a leaf becomes rows b*K .. b*K + K-1, the layout beam_search uses
  for its flattened batch. For the model's cache and anything tokens_to_logits
  closes over per row (e.g. Encoded). The rows are along axis 0 of each leaf
  and 0-d leaves (a cache_index, is_filled) are shared by all rows and stay as
  they are, unless `batch_axes` (a tree of ints and Nones, e.g.
  models.contract.cache_batch_axes of a scan_layers model) says otherwise.
  """
  return _map_rows(lambda x, axis: jnp.repeat(x, beam_size, axis), tree,
                   batch_axes)


def _check_rows(tree: Any, num_rows: int, batch_axes: Any = None) -> None:
  axes = jax.tree.leaves(_rows_axes(tree, batch_axes),
                         is_leaf=lambda a: a is None)
  for (path, leaf), axis in zip(jax.tree_util.tree_leaves_with_path(tree),
                                axes):
    if axis is not None and jnp.shape(leaf)[axis] != num_rows:
      raise ValueError(
          f"Cache leaf {jax.tree_util.keystr(path)} has shape "
          f"{jnp.shape(leaf)}, not batch_size*beam_size={num_rows} rows along "
          f"axis {axis}; build it for that many rows or use expand_to_beams.")


def gather_beams(tree: Any, beam_indices_BxK: jax.Array,
                 batch_axes: Any = None) -> Any:
  """Row b*K + k of each leaf <- row b*K + beam_indices[b, k] (0-d kept);
  rows along axis 0, or as `batch_axes` says (see expand_to_beams)."""
  batch_size, beam_size = beam_indices_BxK.shape
  _check_rows(tree, batch_size * beam_size, batch_axes)
  rows_N = (jnp.arange(batch_size)[:, None] * beam_size
            + beam_indices_BxK).reshape(-1)
  return _map_rows(lambda x, axis: jnp.take(x, rows_N, axis=axis), tree,
                   batch_axes)


def cache_length_axes(make_cache, max_len: int) -> Any:
  """The axis of each cache leaf that grows with the decoding length (the
  self-attention keys/values); None for the others (cross-attention,
  indices), found by comparing the shapes of caches for max_len - 1 and
  max_len positions. `make_cache(max_len)` builds the cache (e.g. a partial of
  models.contract.init_cache); only shapes are computed. None where no leaf
  has one (an RNN's state) or max_len < 2: beam_search then gathers all."""
  if max_len < 2:
    return None
  short, longer = (jax.eval_shape(lambda n=n: make_cache(n))
                   for n in (max_len - 1, max_len))

  def length_axis(a, b):
    differ = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
    return differ[0] if len(differ) == 1 else None

  axes = jax.tree.map(length_axis, short, longer)
  if all(a is None for a in jax.tree.leaves(axes, is_leaf=lambda a: a is None)):
    return None
  return axes


def gather_filled_beams(tree: Any, beam_indices_BxK: jax.Array,
                        batch_axes: Any, length_axes: Any, filled: jax.Array,
                        max_len: int, buckets: int = 8) -> Any:
  """gather_beams of the positions written so far only: a leaf with a
  length axis has its first `filled` positions (rounded up to a multiple of
  max_len / buckets) reordered and the rest left as they are. Exact for a
  causal cache: a position past `filled` is written at its own step, before
  any query reads it."""
  batch_size, beam_size = beam_indices_BxK.shape
  rows_N = (jnp.arange(batch_size)[:, None] * beam_size
            + beam_indices_BxK).reshape(-1)
  chunk = -(-max_len // buckets)
  sizes = sorted({min(max_len, chunk * (i + 1)) for i in range(buckets)})
  flat, treedef = jax.tree.flatten(tree)
  rows_axes = jax.tree.leaves(_rows_axes(tree, batch_axes),
                              is_leaf=lambda a: a is None)
  len_axes = jax.tree.leaves(length_axes, is_leaf=lambda a: a is None)

  def reorder(n, leaves):
    out = []
    for x, axis, length_axis in zip(leaves, rows_axes, len_axes):
      if axis is None:
        out.append(x)
      elif length_axis is None or n >= x.shape[length_axis]:
        out.append(jnp.take(x, rows_N, axis=axis))
      else:
        part = jnp.take(lax.slice_in_dim(x, 0, n, axis=length_axis), rows_N,
                        axis=axis)
        out.append(lax.dynamic_update_slice_in_dim(x, part, 0, length_axis))
    return out

  branches = [lambda leaves, n=n: reorder(n, leaves) for n in sizes]
  index = jnp.searchsorted(jnp.array(sizes), filled)
  return jax.tree.unflatten(treedef, lax.switch(
      jnp.minimum(index, len(sizes) - 1), branches, flat))


def _take(x_BxC, indices_BxK):
  """x[b, indices[b, k]] along axis 1, any trailing dims."""
  indices = indices_BxK.reshape(indices_BxK.shape + (1,) * (x_BxC.ndim - 2))
  return jnp.take_along_axis(x_BxC, indices, axis=1)


@flax.struct.dataclass
class _BeamState:
  step: jax.Array  # Tokens in each live hypothesis.
  last_BxK: jax.Array  # Last token of each live hypothesis, fed next.
  live_tokens_BxKxT: jax.Array  # Pad after `step`.
  live_logprobs_BxK: jax.Array  # Best first; -inf for no hypothesis.
  finished_tokens_BxKxT: jax.Array  # Pad after EOS.
  finished_scores_BxK: jax.Array  # Best first; -inf for no hypothesis.
  finished_BxK: jax.Array  # True where a finished hypothesis is held.
  cache: Any  # Row b*K + k belongs to live hypothesis k of batch row b.
  done_B: jax.Array  # scoring="hf": the row takes no more finished ones.


def beam_search(tokens_to_logits: TokensToLogits, cache: Any, batch_size: int,
                beam_size: int, max_len: int, eos_id: int, *,
                length_penalty: float = 0.6, start_id: int = PAD_ID,
                batch_axes: Any = None, length_axes: Any = None,
                scoring: str = "gnmt",
                early_stopping: bool | str = False,
                rules: Any = None) -> tuple[jax.Array, jax.Array]:
  """The beam_size best hypotheses per row: (tokens_BxKxT, scores_BxK).

  tokens_to_logits sees batch_size*beam_size rows, row b*K + k for beam k of
  batch row b; `cache` must have those rows (see expand_to_beams) and is
  reordered with the beams each step (gather_beams; 0-d leaves untouched).
  The rows of a cache leaf are along its axis 0 unless `batch_axes` (the
  cache's structure with an int or None per leaf) says otherwise: a
  scan_layers model's cache is layers first, and reordering its axis 0 would
  shuffle layers (models.contract.cache_batch_axes gives its axes).
  `length_axes` (cache_length_axes: the self-attention caches' position
  axis, None elsewhere) makes each step reorder only the positions written
  so far, in eighths of max_len (same tokens and scores, less copying).
  length_penalty is alpha of gnmt_length_penalty (scoring="gnmt"), or the
  exponent of HF's length ** length_penalty (scoring="hf", with HF's
  early_stopping); see the module docstring for the scores. `rules`: a
  decoding.rules.GenerationRules applied to every step's log-softmax. Tokens are as decode_loop's: no start token, EOS included, pad
  after EOS. Each row lists its finished hypotheses best first; only if fewer
  than K finished within max_len, the best unfinished ones (max_len tokens, no
  EOS, scored as if they ended there) fill the remaining slots, best first.
  """
  if beam_size < 1 or max_len < 1:
    raise ValueError(f"beam_size={beam_size} and max_len={max_len} must both "
                     f"be >= 1.")
  _check_rows(cache, batch_size * beam_size, batch_axes)
  check_beam_args(scoring, early_stopping)
  hf = scoring == "hf"
  penalty = lambda length: (hf_length_penalty if hf else gnmt_length_penalty)(
      length, length_penalty)
  shape_BxK = (batch_size, beam_size)

  def reorder_cache(cache, parents_BxK, filled):
    if length_axes is None:
      return gather_beams(cache, parents_BxK, batch_axes)
    return gather_filled_beams(cache, parents_BxK, batch_axes, length_axes,
                               filled, max_len, BUCKETS)

  def hf_not_done(state: _BeamState) -> jax.Array:
    all_full = jnp.all(state.finished_BxK) & (early_stopping is True)
    return (state.step < max_len) & ~jnp.all(state.done_B) & ~all_full

  def hf_done(state: _BeamState) -> jax.Array:
    """HF's _check_early_stop_heuristic (and early_stopping=True's full
    rows), after a step: the rows that stop taking finished hypotheses."""
    hypothetical = (max_len if early_stopping == "never"
                    and length_penalty > 0 else state.step)
    best_B = state.live_logprobs_BxK[:, 0] / penalty(hypothetical)
    full_B = jnp.all(state.finished_BxK, axis=1)
    worst_B = jnp.where(full_B, jnp.min(state.finished_scores_BxK, axis=1),
                        -jnp.inf)
    return (state.done_B | ~(best_B > worst_B)
            | (full_B & (early_stopping is True)))

  def not_done(state: _BeamState) -> jax.Array:
    if hf:
      return hf_not_done(state)
    largest_penalty = jnp.maximum(penalty(state.step + 1), penalty(max_len))
    best_reachable_B = state.live_logprobs_BxK[:, 0] / largest_penalty
    worst_finished_B = jnp.where(jnp.all(state.finished_BxK, axis=1),
                                 state.finished_scores_BxK[:, -1], -jnp.inf)
    settled = jnp.all(worst_finished_B >= best_reachable_B)
    return (state.step < max_len) & ~settled

  def step(state: _BeamState) -> _BeamState:
    logits_NxV, cache = tokens_to_logits(state.last_BxK.reshape(-1, 1),
                                         state.cache)
    vocab_size = logits_NxV.shape[-1]
    logprobs_NxV = jax.nn.log_softmax(logits_NxV.astype(jnp.float32))
    if rules is not None:
      logprobs_NxV = rules(
          logprobs_NxV,
          state.live_tokens_BxKxT.reshape(batch_size * beam_size, -1),
          state.step)
    logprobs_BxKxV = logprobs_NxV.reshape(shape_BxK + (vocab_size,))
    expanded_BxKV = (state.live_logprobs_BxK[..., None]
                     + logprobs_BxKxV).reshape(batch_size, -1)
    num_candidates = min(2 * beam_size, expanded_BxKV.shape[1])
    logprobs_BxC, flat_BxC = lax.top_k(expanded_BxKV, num_candidates)
    parents_BxC = flat_BxC // vocab_size
    new_BxC = flat_BxC % vocab_size
    tokens_BxCxT = lax.dynamic_update_slice(
        _take(state.live_tokens_BxKxT, parents_BxC), new_BxC[..., None],
        (0, 0, state.step))
    ends_BxC = new_BxC == eos_id

    # Finished: the EOS-ending ones of the K best, merged into the K best
    # finished (on ties the earlier-found hypothesis stays first).
    finishes_BxC = (ends_BxC & (jnp.arange(num_candidates) < beam_size)
                    & (logprobs_BxC > -jnp.inf))
    if hf:  # the K best at max_len finish too; stopped rows take none
      finishes_BxC = (((ends_BxC | (state.step + 1 >= max_len))
                       & (jnp.arange(num_candidates) < beam_size)
                       & (logprobs_BxC > -jnp.inf))
                      & ~state.done_B[:, None]
                      & ~(jnp.all(state.finished_BxK, axis=1, keepdims=True)
                          & (early_stopping is True)))
    scores_BxC = jnp.where(finishes_BxC,
                           logprobs_BxC / penalty(state.step + 1), -jnp.inf)
    finished_scores_BxK, kept_BxK = lax.top_k(
        jnp.concatenate([state.finished_scores_BxK, scores_BxC], axis=1),
        beam_size)
    finished_tokens_BxKxT = _take(jnp.concatenate(
        [state.finished_tokens_BxKxT, tokens_BxCxT], axis=1), kept_BxK)
    finished_BxK = _take(jnp.concatenate(
        [state.finished_BxK, finishes_BxC], axis=1), kept_BxK)

    # Live: the K best that do not end in EOS; the cache follows them.
    live_logprobs_BxK, picked_BxK = lax.top_k(
        jnp.where(ends_BxC, -jnp.inf, logprobs_BxC), beam_size)
    new_state = _BeamState(
        step=state.step + 1, last_BxK=_take(new_BxC, picked_BxK),
        live_tokens_BxKxT=_take(tokens_BxCxT, picked_BxK),
        live_logprobs_BxK=live_logprobs_BxK,
        finished_tokens_BxKxT=finished_tokens_BxKxT,
        finished_scores_BxK=finished_scores_BxK, finished_BxK=finished_BxK,
        cache=reorder_cache(cache, _take(parents_BxC, picked_BxK),
                            state.step + 1),
        done_B=state.done_B)
    if hf:
      new_state = new_state.replace(done_B=hf_done(new_state))
    return new_state

  # All beams start as the same empty hypothesis: only beam 0 is live, or the
  # first step would fill the beam with K copies of the best expansion.
  first_live_K = jnp.where(jnp.arange(beam_size) == 0, 0.0, -jnp.inf)
  initial = _BeamState(
      step=jnp.array(0, jnp.int32),
      last_BxK=jnp.full(shape_BxK, start_id, jnp.int32),
      live_tokens_BxKxT=jnp.full(shape_BxK + (max_len,), PAD_ID, jnp.int32),
      live_logprobs_BxK=jnp.broadcast_to(first_live_K, shape_BxK),
      finished_tokens_BxKxT=jnp.full(shape_BxK + (max_len,), PAD_ID,
                                     jnp.int32),
      finished_scores_BxK=jnp.full(shape_BxK, -jnp.inf),
      finished_BxK=jnp.zeros(shape_BxK, jnp.bool_),
      cache=cache, done_B=jnp.zeros((batch_size,), jnp.bool_))
  final = lax.while_loop(not_done, step, initial)

  # Slots without a finished hypothesis (all at the end, as their score is
  # -inf) take the best live ones in order; an early stop leaves none.
  first_empty_Bx1 = jnp.sum(final.finished_BxK, axis=1, keepdims=True)
  from_live_BxK = jnp.clip(jnp.arange(beam_size) - first_empty_Bx1, 0,
                           beam_size - 1)
  live_scores_BxK = final.live_logprobs_BxK / penalty(final.step)
  tokens_BxKxT = jnp.where(final.finished_BxK[..., None],
                           final.finished_tokens_BxKxT,
                           _take(final.live_tokens_BxKxT, from_live_BxK))
  scores_BxK = jnp.where(final.finished_BxK, final.finished_scores_BxK,
                         _take(live_scores_BxK, from_live_BxK))
  return tokens_BxKxT, scores_BxK
