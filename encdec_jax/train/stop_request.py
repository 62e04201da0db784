"""SIGINT/SIGTERM during training: finish the step, save, exit cleanly."""

import contextlib
import signal


class EvaluationStopped(Exception):
  """A stop request cut an evaluation short."""


class StopRequest:
  """Turns SIGINT/SIGTERM into a flag the loop checks between steps.

  An evaluation does not wait for the flag: it can take minutes (beam
  search over a whole split), longer than a preemption notice gives. Inside
  `evaluation()` the signal stops it at once; its step is checkpointed
  already, and the rerun evaluates that step again.
  """

  def __init__(self):
    self.signal = None
    self._evaluating = False
    self._previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    if self.signal is not None:  # a second Ctrl-C: the usual behaviour, now
      self.restore()
      signal.raise_signal(signum)
    self.signal = signum
    if self._evaluating:
      self._evaluating = False  # raise once
      raise EvaluationStopped()

  @contextlib.contextmanager
  def evaluation(self):
    if self.signal is not None:
      raise EvaluationStopped()
    self._evaluating = True
    try:
      yield
    finally:
      self._evaluating = False

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
