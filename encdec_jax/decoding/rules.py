"""Token rules of Hugging Face `generate` (its logits processors), jittable.

  rules = GenerationRules(eos_id=1, start_id=0, max_steps=T,
                          no_repeat_ngram_size=3, min_new_tokens=5)
  scores_NxV = rules(scores_NxV, tokens_NxT, step)

tokens_NxT is a decoding loop's output buffer (no start token, pad after
`step`, the number of tokens emitted so far); like transformers, the rules see
the decoder's ids with the start token in front (start_id), so an n-gram or a
repeated token can involve it. Everything is computed from fixed-shape arrays
inside the loop: no per-step host work.

HF applies them, in this order, to the raw logits in greedy decoding and
sampling (before temperature, top-k, top-p) and to the log-softmax in beam
search; so do greedy_decode / sample_decode / beam_search given `rules`:

  repetition_penalty     tokens already in the decoder ids: positive scores
                         divided by it, negative ones multiplied
  no_repeat_ngram_size   n: a token that would complete an n-gram already in
                         the ids is -inf
  bad_words_ids          a token sequence never generated: its last token is
                         -inf wherever the ids end with the rest (single
                         tokens always; a sequence equal to [eos] is dropped)
  min_new_tokens         EOS is -inf while fewer tokens were emitted (HF's
                         min_length counts the start token: min_length - 1)
  forced_bos_token_id    the first token
  forced_eos_token_id    the last token the length allows (step max_steps - 1)
  renormalize_logits     log-softmax of the result (HF applies it after the
                         sampling filters, which it does not change; in beam
                         search it renormalises what the rules masked)
"""
import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from encdec_jax.decoding.loop import PAD_ID


@dataclasses.dataclass(frozen=True)
class GenerationRules:
  """HF's logits processors for one decoding run; static (hashable) fields."""
  eos_id: int
  start_id: int = PAD_ID
  max_steps: int | None = None  # the loop's max_len (for forced EOS)
  min_new_tokens: int = 0
  repetition_penalty: float = 1.0
  no_repeat_ngram_size: int = 0
  bad_words_ids: tuple[tuple[int, ...], ...] = ()
  forced_bos_token_id: int | None = None
  forced_eos_token_id: int | None = None
  renormalize_logits: bool = False

  def __post_init__(self):
    if not self.repetition_penalty > 0:
      raise ValueError(f"repetition_penalty={self.repetition_penalty} must be "
                       "> 0 (1 is none).")
    for name in ("min_new_tokens", "no_repeat_ngram_size"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0.")
    if any(not word or min(word) < 0 for word in self.bad_words_ids):
      raise ValueError(f"bad_words_ids={self.bad_words_ids}: each must be a "
                       "non-empty list of token ids >= 0.")
    if self.forced_eos_token_id is not None and self.max_steps is None:
      raise ValueError("forced_eos_token_id needs max_steps (the decoding "
                       "loop's max_len).")

  @property
  def active(self) -> bool:
    """Whether any rule changes a score (else decoding skips them)."""
    return bool(self.repetition_penalty != 1.0 or self.no_repeat_ngram_size
                or self._bad_words() or self.min_new_tokens
                or self.forced_bos_token_id is not None
                or self.forced_eos_token_id is not None
                or self.renormalize_logits)

  def _bad_words(self) -> tuple[tuple[int, ...], ...]:
    # HF drops a bad word that is EOS alone (it would forbid stopping).
    return tuple(tuple(w) for w in self.bad_words_ids
                 if tuple(w) != (self.eos_id,))

  def __call__(self, scores_NxV: jax.Array, tokens_NxT: jax.Array,
               step: jax.Array) -> jax.Array:
    """The scores with every rule applied, in HF's order."""
    scores_NxV = scores_NxV.astype(jnp.float32)
    num_rows, vocab_size = scores_NxV.shape
    ids = [w for word in self._bad_words() for w in word] + [
        t for t in (self.forced_bos_token_id, self.forced_eos_token_id,
                    self.eos_id) if t is not None]
    if ids and max(ids) >= vocab_size:
      raise ValueError(f"token id {max(ids)} in the generation rules is not "
                       f"below the model's vocabulary size {vocab_size}.")
    # The decoder ids as HF sees them: start token, then the emitted tokens.
    ids_NxL = jnp.concatenate(
        [jnp.full((num_rows, 1), self.start_id, jnp.int32),
         tokens_NxT.astype(jnp.int32)], axis=1)
    length = step + 1  # ids known so far (HF's cur_len)
    known_L = jnp.arange(ids_NxL.shape[1]) < length
    vocab_V = jnp.arange(vocab_size)
    if self.repetition_penalty != 1.0:
      seen_NxV = _token_mask(jnp.where(known_L, ids_NxL, vocab_size),
                             vocab_size)
      penalised_NxV = jnp.where(scores_NxV < 0,
                                scores_NxV * self.repetition_penalty,
                                scores_NxV / self.repetition_penalty)
      scores_NxV = jnp.where(seen_NxV, penalised_NxV, scores_NxV)
    if self.no_repeat_ngram_size:
      scores_NxV = jnp.where(
          _repeated_ngram_ends(ids_NxL, length, self.no_repeat_ngram_size,
                               vocab_size), -jnp.inf, scores_NxV)
    if self._bad_words():
      scores_NxV = jnp.where(
          _bad_word_ends(ids_NxL, length, self._bad_words(), vocab_size),
          -jnp.inf, scores_NxV)
    if self.min_new_tokens:
      scores_NxV = jnp.where(
          (step < self.min_new_tokens) & (vocab_V == self.eos_id), -jnp.inf,
          scores_NxV)
    if self.forced_bos_token_id is not None:
      scores_NxV = _force(scores_NxV, step == 0, self.forced_bos_token_id)
    if self.forced_eos_token_id is not None:
      scores_NxV = _force(scores_NxV, step == self.max_steps - 1,
                          self.forced_eos_token_id)
    if self.renormalize_logits:
      scores_NxV = jax.nn.log_softmax(scores_NxV)
    return scores_NxV


def _token_mask(ids_NxL: jax.Array, vocab_size: int) -> jax.Array:
  """NxV: True at every id of the row; ids == vocab_size are ignored."""
  rows_NxL = jnp.broadcast_to(jnp.arange(ids_NxL.shape[0])[:, None],
                              ids_NxL.shape)
  mask = jnp.zeros((ids_NxL.shape[0], vocab_size + 1), jnp.bool_)
  return mask.at[rows_NxL, ids_NxL].set(True)[:, :vocab_size]


def _repeated_ngram_ends(ids_NxL, length, n: int, vocab_size: int):
  """NxV: tokens that would complete an n-gram already among the first
  `length` ids (HF's NoRepeatNGramLogitsProcessor: every window whose first
  n-1 ids equal the last n-1 ids bans its own last id)."""
  num_windows = ids_NxL.shape[1] - n + 1
  if num_windows < 1:
    return jnp.zeros((ids_NxL.shape[0], vocab_size), jnp.bool_)
  windows_NxJxn = jnp.stack(
      [ids_NxL[:, i:i + num_windows] for i in range(n)], axis=-1)
  suffix_Nxm = lax.dynamic_slice_in_dim(
      ids_NxL, jnp.maximum(length - (n - 1), 0), n - 1, axis=1)
  matches_NxJ = (jnp.all(windows_NxJxn[..., :-1] == suffix_Nxm[:, None, :],
                         axis=-1)
                 & (jnp.arange(num_windows) + n - 1 < length)
                 & (length >= n))
  return _token_mask(jnp.where(matches_NxJ, windows_NxJxn[..., -1],
                               vocab_size), vocab_size)


def _bad_word_ends(ids_NxL, length, words, vocab_size: int):
  """NxV: the last token of every bad word whose other tokens end the
  first `length` ids (a single token: always)."""
  longest = max(len(w) for w in words) - 1
  # Prefixes right-aligned in `longest` slots; -1 left of them matches all.
  prefixes_WxP = jnp.asarray([[-1] * (longest - len(w) + 1) + list(w[:-1])
                              for w in words], jnp.int32).reshape(
                                  len(words), longest)
  lasts_W = jnp.asarray([w[-1] for w in words], jnp.int32)
  # -2 before the start token: a prefix longer than the ids never matches.
  padded_NxPL = jnp.concatenate(
      [jnp.full((ids_NxL.shape[0], longest), -2, jnp.int32), ids_NxL], axis=1)
  suffix_NxP = lax.dynamic_slice_in_dim(padded_NxPL, length, longest, axis=1)
  matches_NxW = jnp.all((suffix_NxP[:, None, :] == prefixes_WxP[None])
                        | (prefixes_WxP[None] == -1), axis=-1)
  return _token_mask(jnp.where(matches_NxW, lasts_W[None, :], vocab_size),
                     vocab_size)


def _force(scores_NxV, now, token: int):
  """Where `now`: every score -inf but `token`'s, which is 0."""
  only_NxV = jnp.where(jnp.arange(scores_NxV.shape[-1]) == token, 0.0,
                       -jnp.inf)
  return jnp.where(now, only_NxV[None, :], scores_NxV)
