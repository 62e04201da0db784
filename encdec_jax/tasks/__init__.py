"""What is trained: one module per task, each a `Task` (tasks/base.py).

  task            model (config.model.family)       module
  translation     EncoderDecoder | RNNEncoderDecoder  translation.py
  lm              DecoderOnlyLM                       lm.py
  classification  EncoderClassifier                   classification.py
  embedding       SentenceEmbedder                    embedding.py
  autoencoder     Autoencoder (mlp | conv)            autoencoder.py
  captioning      Captioner (transformer | rnn)       captioning.py
  pretraining     EncoderDecoder (T5 span corruption) pretraining.py

A new task is one new module defining `TASK = Task(...)` and one line in
TASKS below; `config.task` then selects it.
"""

from encdec_jax.tasks import (autoencoder, captioning, classification,
                              embedding, lm, pretraining, translation)
from encdec_jax.tasks.base import EvalResult, Task  # noqa: F401 (API)

DEFAULT = "translation"
TASKS = {t.name: t for t in (
    translation.TASK,
    lm.TASK,
    classification.TASK,
    embedding.TASK,
    autoencoder.TASK,
    captioning.TASK,
    pretraining.TASK,
)}


def get(config) -> Task:
  """The task `config.task` names (default: translation)."""
  name = config.get("task", DEFAULT)
  if name not in TASKS:
    raise ValueError(f"config.task={name!r} is not known; use one of "
                     f"{tuple(TASKS)}.")
  return TASKS[name]
