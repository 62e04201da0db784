"""Encoder transfer (fastai's load_encoder): config.init_encoder.

  python -m encdec_jax.main --config=... --mode=export_encoder --output=enc/
  python -m encdec_jax.main --config=... --config.init_encoder=enc/ ...

The model is the config's; its encoder starts from the saved one (a
save_encoder directory, a workdir or one of its steps), loaded strictly: the
architecture fields and the vocabulary must agree (checkpoint/encoder.py).
A text encoder brings its tokenizer, which the new workdir adopts. The
groups made only of encoder parameters start frozen unless
config.init_encoder_trainable is set or config.layer_groups schedules them
(gradual unfreezing).
"""

from encdec_jax import checkpoint
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.starts.base import Start


def _install(config, workdir: str, reads_text: bool) -> None:
  """A transferred encoder only makes sense with the vocabulary it was
  trained with: adopt it (load_encoder checks it again)."""
  if not reads_text:  # an image encoder has no tokens
    return
  adopted = checkpoint.install_encoder_tokenizer(config.init_encoder, workdir)
  kind = adopted and tokenizer_lib.kind_of(adopted)
  if kind and kind != config.tokenizer:
    raise ValueError(
        f"config.init_encoder={config.init_encoder} reads {kind} tokens "
        f"but config.tokenizer={config.tokenizer!r}; set "
        f"--config.tokenizer={kind}.")


def _initial_params(config, params, encoder_spec, log):
  """`params` with the encoder of config.init_encoder (strict by default)."""
  params, report = checkpoint.load_encoder(
      config.init_encoder, into=params, expected_spec=encoder_spec(),
      strict=config.get("init_encoder_strict", True))
  log(report.summary())
  for title, paths in (("left at init", report.left_at_init),
                       ("ignored", report.ignored),
                       ("differences", report.differences)):
    if paths:
      log(f"  {title}: " + ", ".join(paths))
  return params


def _frozen(config, labels: dict) -> set:
  """The groups made only of encoder parameters, unless they train."""
  if config.get("init_encoder_trainable"):
    return set()
  groups = set(labels.values())
  encoder_only = {g for g in groups
                  if all(path[0] == "encoder"
                         for path, h in labels.items() if h == g)}
  return encoder_only - set(config.get("layer_groups", ()))


START = Start(
    "encoder_transfer",
    install=_install,
    initial_params=_initial_params,
    frozen=_frozen,
    untrained_encoder=lambda config: config.init_encoder,
)
