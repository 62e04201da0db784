"""Every `--config.x.y=v` the README, docs/*.md and experiments/README.md
show works on the config the same command names: each fenced command with
a `--config=FILE[:ARM]` is parsed as the command line parses it
(ml_collections' config_flags: the file's get_config(ARM), then each
override, its value read as the field's type), and fails on a field the
config does not have or a value it cannot take.

A value that is a placeholder (`$F`, `<dir>`, `...`) is not parsed; its
field must still exist."""

import ast
import glob
import os
import re
import shlex

import pytest
from absl import flags
from ml_collections import config_flags

from test_docs_commands import REPO, code_blocks, doc_files, prose

OVERRIDE = re.compile(r"^--config\.([\w.]+)=(.*)$", re.S)
PLACEHOLDER = re.compile(r"[$<>|]|\.\.\.|^[A-Z_]+$|^[a-zA-Z]?$")
# Mistyped fields the docs show on purpose (what the error line says).
MISTAKES = ("model.num_head", "batch_sise")


def _blocks():
  """(where, the config a `...` line continues, text) of every fenced block
  of the docs and every experiments/*.py docstring (whose `... --config.x`
  lines override that file's own config)."""
  for doc in doc_files():
    with open(doc, encoding="utf-8") as f:
      for block in code_blocks(f.read()):
        yield os.path.relpath(doc, REPO), None, block
  for path in sorted(glob.glob(os.path.join(REPO, "experiments", "*.py"))):
    with open(path, encoding="utf-8") as f:
      docstring = ast.get_docstring(ast.parse(f.read())) or ""
    rel = os.path.relpath(path, REPO)
    yield rel, rel, docstring.replace("\\\n", " ")


def documented_commands():
  """[(doc, config argument, [(field, value)])] of every documented command
  line with a --config=FILE (or a `...` line of an experiment's docstring)."""
  out = []
  for doc, own_config, block in _blocks():
    for line in block.splitlines():
      try:
        words = shlex.split(line, comments=True)
      except ValueError:  # an unbalanced quote in prose-like code
        continue
      configs = [w.split("=", 1)[1] for w in words
                 if w.startswith("--config=")]
      if not configs and own_config and words[:1] == ["..."]:
        configs = [own_config]
      if len(configs) != 1 or PLACEHOLDER.search(configs[0]):
        continue
      overrides = [OVERRIDE.match(w).groups() for w in words
                   if OVERRIDE.match(w)]
      if overrides:
        out.append((doc, configs[0], overrides))
  return out


def override_problem(config_arg: str, overrides) -> str | None:
  """Why the command line would refuse these overrides, or None."""
  path, _, arm = config_arg.partition(":")
  path = os.path.join(REPO, path)
  argv = ["main", f"--config={path}{':' + arm if arm else ''}"]
  argv += [f"--config.{field}={value}" for field, value in overrides
           if not PLACEHOLDER.search(value)]
  values = flags.FlagValues()  # main.py's flag, on a parser of its own
  config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                  lock_config=True, sys_argv=argv)
  try:
    values(argv)
    config = values.config
  except Exception as e:  # noqa: BLE001  the message is the finding
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
  for field, value in overrides:  # placeholders: the field must exist
    node = config
    for part in field.split("."):
      if not hasattr(node, "keys") or part not in node:
        return f"config has no field {field!r}"
      node = node[part]
  return None


MAIN = "experiments/number_translation.py"
INLINE_CODE = re.compile(r"`([^`\n]*--config\.[^`\n]*)`")


def all_configs():
  """Every shipped config argument: each experiments/*.py and its ARMS."""
  out = []
  for path in sorted(glob.glob(os.path.join(REPO, "experiments", "*.py"))):
    rel = os.path.relpath(path, REPO)
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read())
    if not any(isinstance(n, ast.FunctionDef) and n.name == "get_config"
               for n in tree.body):
      continue
    arms = [ast.literal_eval(n.value) for n in tree.body
            if isinstance(n, ast.Assign) and any(
                getattr(t, "id", "") == "ARMS" for t in n.targets)]
    out += [rel] + [f"{rel}:{arm}" for arm in (arms[0][1:] if arms else ())]
  return out


def prose_flags():
  """[(doc, [(field, value)])] of the `--config.x=v` the docs' text shows
  inline, outside a command (docs/errors.md's are mistakes on purpose)."""
  out = []
  for doc in doc_files():
    if doc.endswith("errors.md"):
      continue
    with open(doc, encoding="utf-8") as f:
      text = prose(f.read())
    for span in INLINE_CODE.findall(text):
      if "--config=" in span:
        continue  # a command: documented_commands' part
      overrides = [(f, v) for f, v in OVERRIDE_INLINE.findall(span)
                   if f not in MISTAKES]
      if overrides:
        out.append((os.path.relpath(doc, REPO), overrides))
  return out


OVERRIDE_INLINE = re.compile(r"--config\.([\w.]+)=([^\s`]*)")
COMMANDS = documented_commands()
PROSE = prose_flags()


def test_the_docs_show_config_overrides():
  assert len(COMMANDS) >= 20 and len(PROSE) >= 20
  fields = {field for _, _, overrides in COMMANDS for field, _ in overrides}
  fields |= {field for _, overrides in PROSE for field, _ in overrides}
  for documented in ("decode.k", "decode.draft", "model.copy",
                     "model.relative_position_buckets"):
    assert documented in fields, documented


@pytest.mark.parametrize("doc, config_arg, overrides", COMMANDS,
                         ids=[f"{d}:{c}:{','.join(f for f, _ in o)}"
                              for d, c, o in COMMANDS])
def test_every_documented_override_applies(doc, config_arg, overrides):
  problem = override_problem(config_arg, overrides)
  assert problem is None, f"{doc}: --config={config_arg}: {problem}"


def test_the_check_finds_an_unknown_field_and_a_bad_value():
  main = "experiments/number_translation.py"
  assert "has no field" in override_problem(main, [("model.nope", "1")]) or \
      "nope" in override_problem(main, [("model.nope", "1")])
  assert override_problem(main, [("batch_size", "abc")])
  assert override_problem(main, [("model.nope", "$X")]) == \
      "config has no field 'model.nope'"
  assert override_problem(main, [("batch_size", "64")]) is None


@pytest.mark.parametrize("doc, overrides", PROSE,
                         ids=[f"{d}:{','.join(f for f, _ in o)}"
                              for d, o in PROSE])
def test_every_flag_the_text_mentions_applies_to_a_shipped_config(
    doc, overrides):
  """The main job's config first, then any shipped config and arm."""
  problems = {}
  for config_arg in [MAIN] + [c for c in all_configs() if c != MAIN]:
    problems[config_arg] = override_problem(config_arg, overrides)
    if problems[config_arg] is None:
      return
  pytest.fail(f"{doc}: {overrides} apply to no shipped config; on the main "
              f"job: {problems[MAIN]}")


@pytest.mark.parametrize("config_arg, overrides", [
    ("experiments/rnn_translation.py", [("model.copy", "true")]),
    (MAIN, [("model.position_embedding", "none"),
            ("model.relative_position_buckets", "32")]),
    (MAIN, [("decode.algorithm", "speculative"), ("decode.k", "4"),
            ("decode.draft", "self:1"), ("decode.sample", "true")]),
])
def test_the_flags_the_guides_name_apply_to_the_configs_they_name(
    config_arg, overrides):
  """docs/copy.md (the RNN family copies too), the copy study's relative
  positions on the main job's model, docs/running.md's speculative
  decoding on the main job."""
  assert override_problem(config_arg, overrides) is None
