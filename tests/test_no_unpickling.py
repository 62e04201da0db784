"""Nothing in encdec_jax can run code from a file it loads: checkpoints,
encoders and imported weights are read as tensorstore arrays, JSON,
SentencePiece/tokenizer.json and safetensors, never unpickled.

The guard parses every module of the package (an AST check, not a substring
search, so `from pickle import loads`, aliases and spacing do not slip past),
and is itself tested on small bad snippets, so that it can fail.
"""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "encdec_jax")

# Modules whose loading functions unpickle (or run marshalled code).
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill",
                  "shelve", "marshal", "jsonpickle"}
# Functions that unpickle, whatever they are called through.
UNSAFE_FUNCTIONS = {"joblib.load", "torch.load", "pandas.read_pickle",
                    "yaml.unsafe_load", "yaml.unsafe_load_all",
                    "yaml.full_load", "yaml.full_load_all",
                    "tensorflow.keras.models.load_model"}
# yaml.load / load_all are safe only with one of these loaders.
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader"}


def unsafe_loads(source: str, filename: str = "<snippet>") -> list[str]:
  """'file:line: what' for each way `source` could unpickle."""
  tree = ast.parse(source, filename)
  aliases = {}  # local name -> dotted name it was imported as
  found = []

  def report(node, what):
    found.append(f"{filename}:{node.lineno}: {what}")

  def dotted(node) -> str | None:
    """The imported name an expression refers to (np.load -> numpy.load)."""
    parts = []
    while isinstance(node, ast.Attribute):
      parts.append(node.attr)
      node = node.value
    if not isinstance(node, ast.Name):
      return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))

  def unsafe_module(name: str) -> bool:
    return name.split(".")[0] in UNSAFE_MODULES

  # Imports first, wherever they are, so that aliases resolve everywhere.
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if unsafe_module(a.name):
          report(node, f"import {a.name}")
        aliases[(a.asname or a.name).split(".")[0]] = (
            a.name if a.asname else a.name.split(".")[0])
    elif isinstance(node, ast.ImportFrom) and node.module:
      for a in node.names:
        full = f"{node.module}.{a.name}"
        if unsafe_module(node.module) or full in UNSAFE_FUNCTIONS:
          report(node, f"from {node.module} import {a.name}")
        aliases[a.asname or a.name] = full

  for node in ast.walk(tree):
    if isinstance(node, (ast.Attribute, ast.Name)):
      name = dotted(node)
      if name in UNSAFE_FUNCTIONS or (
          name and isinstance(node, ast.Attribute) and unsafe_module(name)):
        report(node, name)
    if not isinstance(node, ast.Call):
      continue
    keywords = {k.arg: k.value for k in node.keywords if k.arg}
    pickle_flag = keywords.get("allow_pickle")
    if pickle_flag is not None and not (
        isinstance(pickle_flag, ast.Constant) and pickle_flag.value is False):
      report(node, f"allow_pickle={ast.unparse(pickle_flag)}")
    name = dotted(node.func)
    if name in ("yaml.load", "yaml.load_all"):
      loader = keywords.get("Loader", node.args[1] if len(node.args) > 1
                            else None)
      if loader is None or dotted(loader) not in SAFE_YAML_LOADERS:
        report(node, f"{name} without SafeLoader")
    if (name in ("importlib.import_module", "__import__") and node.args
        and isinstance(node.args[0], ast.Constant)
        and unsafe_module(str(node.args[0].value))):
      report(node, f"{name}({node.args[0].value!r})")
  return sorted(set(found))


def test_the_package_never_unpickles():
  found = []
  for root, _, files in os.walk(PACKAGE):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(root, name)
        with open(path, encoding="utf-8") as f:
          found += unsafe_loads(f.read(), os.path.relpath(path, PACKAGE))
  assert not found, "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "import pickle",
    "import pickle as pk\nstate = pk.loads(b)",
    "from pickle import loads",
    "from _pickle import load as l",
    "import cloudpickle",
    "import dill.settings",
    "import shelve",
    "import joblib\nparams = joblib.load(path)",
    "from joblib import load",
    "import torch\nsd = torch.load(path, weights_only=False)",
    "import torch as T\nread = T.load",
    "import numpy as np\nx = np.load(path, allow_pickle=True)",
    "import numpy as np\nx = np.load(path, allow_pickle = True)",
    "import numpy as np\nx = np.load(path, allow_pickle=flag)",
    "import yaml\nc = yaml.load(f)",
    "import yaml\nc = yaml.load(f, Loader=yaml.Loader)",
    "import yaml\nc = yaml.load(f, yaml.UnsafeLoader)",
    "import yaml\nc = yaml.unsafe_load(f)",
    "from yaml import load\nc = load(f)",
    "import pandas as pd\ndf = pd.read_pickle(path)",
    "import importlib\nm = importlib.import_module('pickle')",
    "m = __import__('dill')",
    "def f():\n  import pickle\n  return pickle.load(open(p, 'rb'))",
])
def test_the_guard_catches(snippet):
  assert unsafe_loads(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import json\nc = json.load(f)",
    "import numpy as np\nx = np.load(path)",
    "import numpy as np\nx = np.load(path, allow_pickle=False)",
    "import yaml\nc = yaml.safe_load(f)",
    "import yaml\nc = yaml.load(f, Loader=yaml.SafeLoader)",
    "from safetensors.numpy import load_file\nw = load_file(path)",
    "import orbax.checkpoint as ocp\nm = ocp.CheckpointManager(d)",
    "# import pickle would be unsafe\ns = 'allow_pickle=True'",
])
def test_the_guard_lets_safe_loading_through(snippet):
  assert not unsafe_loads(snippet), snippet
