"""The Start: where a run's architecture, tokenizer and first params come from.

A start is a frozen dataclass of functions, like a Task (tasks/base.py): the
trainer, the readers (eval, decode, embed) and the exports call them and never
test which start it is. `encdec_jax.starts.get(config)` picks it once.

The five questions every start answers:
  1. the architecture it imposes on the config        configure
  2. the tokenizer it installs in a new workdir        install, vocab_size
  3. the initial params (or the base to restore)       wrap_model,
                                                       initial_params
  4. the parameter groups it freezes                   group_rules, frozen
  5. what checkpoints record and a resume checks       meta, check_resume,
                                                       saved, completed,
                                                       read_target
Every default is "nothing special": the scratch start is Start("scratch").
"""

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Start:
  name: str
  # config -> None: writes the architecture the start imposes into
  # config.model (and config.lora); idempotent, run before the checks.
  configure: Callable[[Any], None] = lambda config: None
  # (config, workdir, encoder_reads_text) -> None: the tokenizer (and origin)
  # files a new training workdir gets before its tokenizer is read or
  # trained; a mismatch with files already there is a one-line ValueError.
  install: Callable[[Any, str, bool], None] = (
      lambda config, workdir, reads_text: None)
  # config -> the model's vocabulary size when it is not the tokenizer's
  # (an imported T5 has 32128 rows for 32000 pieces), else None.
  vocab_size: Callable[[Any], int | None] = lambda config: None
  # (model, config) -> the model the run trains (LoRA: base + adapters).
  wrap_model: Callable[[Any, Any], Any] = lambda model, config: model
  # (config, fresh params, encoder_spec, log) -> the params a new run
  # starts from; `encoder_spec()` is the model's, `log` prints a line.
  initial_params: Callable[..., Any] = (
      lambda config, params, encoder_spec, log: params)
  # config -> parameter-group rules replacing config.param_groups, or None.
  group_rules: Callable[[Any], tuple | None] = lambda config: None
  # (config, {path: group}) -> groups frozen by the start itself.
  frozen: Callable[[Any, dict], set] = lambda config, labels: set()
  # (config, abstract params thunk) -> entries added to every checkpoint's
  # meta; a resume must agree on them.
  meta: Callable[[Any, Callable], dict] = lambda config, abstract: {}
  # Flattened meta entries recorded but not compared on a resume.
  unchecked_meta: tuple[str, ...] = ()
  # (checkpoint manager, expected meta) -> None, or a one-line ValueError
  # before a checkpoint is restored (e.g. an adapter on another base).
  check_resume: Callable[[Any, dict], None] = (
      lambda manager, expected: None)
  # (config, state) -> what a checkpoint holds of it (LoRA: the adapters).
  saved: Callable[[Any, Any], Any] = lambda config, state: state
  # (config, restored state or params, abstract params thunk) -> the
  # complete params tree (LoRA: the base put back beside the adapters).
  completed: Callable[[Any, Any, Any], Any] = (
      lambda config, restored, abstract: restored)
  # (config, checkpoint manager, abstract params) -> what a reader (eval,
  # decode) restores from the workdir's checkpoint.
  read_target: Callable[[Any, Any, Any], Any] = (
      lambda config, saved_meta, abstract: abstract)
  # config -> an encoder directory usable as it is, untrained (--mode=embed
  # with no checkpoint), or None.
  untrained_encoder: Callable[[Any], str | None] = lambda config: None
  # Whether --mode=train may run it (an exported adapter is applied, not
  # trained).
  trains: bool = True
  train_refusal: str = ""
