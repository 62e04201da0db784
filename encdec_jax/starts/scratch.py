"""From scratch: the config's architecture, a tokenizer trained on the
training split, freshly initialised params. Every hook is the default."""

from encdec_jax.starts.base import Start

START = Start("scratch")
