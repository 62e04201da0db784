"""command_calls' test_novel_prefix split: values whose first characters
(and, for names and numbers, whose length) no training target has."""
from encdec_jax.data import command_calls

KINDS = {"who": "name", "to": "name", "amount": "number", "minutes": "number",
         "late": "number", "time": "time"}


def values(target: str) -> set:
  """(kind, value) of each field of a canonical call."""
  out = set()
  for field in target.split(" | ")[1:]:
    key, value = field.split(" ")
    if key in KINDS:
      out.add((KINDS[key], value))
  return out


def test_novel_prefix_values_start_and_measure_as_no_training_value():
  config = command_calls.CommandCallsConfig(
      name="tiny", num_train=2000, num_validation=50, num_test=50,
      num_train_names=60, num_test_names=20, num_novel_prefix=200)
  splits = command_calls.generate(config)
  train = set().union(*(values(t) for _, t in splits["train"]))
  novel = set().union(*(values(t) for _, t in splits["test_novel_prefix"]))
  assert {kind for kind, _ in novel} == {"name", "number", "time"}
  for kind, value in novel:
    width = command_calls.NOVEL_PREFIX_LENGTH[kind]
    starts = {v[:width] for k, v in train if k == kind}
    assert value[:width] not in starts, (kind, value)
    if kind != "time":  # hh:mm: every time has 5 characters
      assert len(value) not in {len(v) for k, v in train if k == kind}
  for source, target in splits["test_novel_prefix"]:  # copyable
    assert all(v in source.split() for _, v in values(target))


def test_adding_the_split_left_the_other_splits_unchanged():
  config = command_calls.CommandCallsConfig(
      name="tiny", num_train=300, num_validation=20, num_test=20,
      num_train_names=30, num_test_names=10, num_novel_prefix=20)
  splits = command_calls.generate(config)
  # The first pairs as version 1.2.0 generated them (before the new split).
  assert splits["train"][0] == ("pay lumozo 2101 dollars",
                                "pay | to lumozo | amount 2101")
  assert splits["validation"][0][0] == (
      "remind me on tuesday at 09:31 to call fidato")
  assert splits["test"][0] == ("set an alarm for 19:38", "alarm | time 19:38")
