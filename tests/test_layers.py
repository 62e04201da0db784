"""The package's layers only point down: no import circle, no import of a
higher layer, no function-level import of the package's own modules outside
main.py, and the starting point (init_from, init_encoder, lora.base,
lora.adapter) read only in encdec_jax/starts/ and the config checks.

Walks the AST of every module, so a new violation fails here before it
spreads."""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PACKAGE = os.path.join(ROOT, "encdec_jax")

# Bottom to top: a module may import its own layer and the ones before it.
LAYERS = ("encdec_jax", "serving", "io_utils", "console", "nn", "parallel",
          "models", "data", "decoding", "checkpoint", "tasks", "lora",
          "pretrained", "starts", "train", "exports", "serving_export",
          "reports", "bench", "main")
# Where the start fields may be read.
START_READERS = ("encdec_jax/starts/", "encdec_jax/train/config_checks.py")
START_FIELDS = ("init_from", "init_encoder")
LORA_START_FIELDS = ("base", "adapter")


def _modules(package_dir: str = PACKAGE) -> dict:
  """{dotted name: path} of every module of the package."""
  out = {}
  root = os.path.dirname(os.path.abspath(package_dir))
  for directory, _, files in os.walk(package_dir):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        out[dotted.removesuffix(".__init__")] = path
  return out


def _targets(node, module: str, is_package: bool, modules: dict) -> list:
  """The package modules (or experiments) an import statement names."""
  if isinstance(node, ast.Import):
    names = [a.name for a in node.names]
  else:
    base = node.module or ""
    if node.level:
      parts = module.split(".")[:len(module.split(".")) - node.level +
                                 (1 if is_package else 0)]
      base = ".".join(parts + ([node.module] if node.module else []))
    names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
             for a in node.names]
  return [n for n in names
          if n.split(".")[0] in ("encdec_jax", "experiments")]


def _imports(modules: dict):
  """[(module, target, function name or None, line)] of every import."""
  out = []
  for module, path in modules.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    in_function = {}
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for sub in ast.walk(node):
          in_function.setdefault(id(sub), node.name)
    for node in ast.walk(tree):
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        for target in _targets(node, module, path.endswith("__init__.py"),
                               modules):
          out.append((module, target, in_function.get(id(node)),
                      node.lineno))
  return out


def _layer(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else parts[0]


def _upward(imports) -> list:
  bad = []
  for module, target, _, line in imports:
    if target.startswith("experiments"):
      bad.append(f"{module}:{line} imports {target} (configs are files: "
                 "read them as main.py reads --config)")
      continue
    a, b = _layer(module), _layer(target)
    if LAYERS.index(b) > LAYERS.index(a):
      bad.append(f"{module}:{line} imports {target}, a higher layer")
  return bad


def _function_level(imports) -> list:
  return [f"{module}:{line} imports {target} inside {function}()"
          for module, target, function, line in imports
          if function and module != "encdec_jax.main"]


def _circles(imports) -> list:
  """Import cycles between modules (Tarjan's strongly connected parts)."""
  graph = {}
  for module, target, _, _ in imports:
    graph.setdefault(module, set()).add(target)
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      part = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        part.append(w)
        if w == v:
          break
      if len(part) > 1:
        found.append(sorted(part))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def _is_lora(node) -> bool:
  """config.lora, or a name for it (lora_config)."""
  return ((isinstance(node, ast.Attribute) and node.attr == "lora") or
          (isinstance(node, ast.Name) and node.id in ("lora", "lora_config")))


def _start_reads(modules: dict) -> list:
  """Reads of the start fields outside the starts layer: config.init_from,
  config.get("init_encoder"), config.lora.base, lora.get("adapter")."""
  bad = []
  for module, path in modules.items():
    rel = module.replace(".", "/") + (
        "/" if path.endswith("__init__.py") else ".py")
    if rel.startswith(START_READERS):
      continue
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      name = None
      if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
        if node.attr in START_FIELDS or (
            node.attr in LORA_START_FIELDS and _is_lora(node.value)):
          name = node.attr
      elif (isinstance(node, ast.Call) and
            isinstance(node.func, ast.Attribute) and
            node.func.attr == "get" and node.args and
            isinstance(node.args[0], ast.Constant)):
        key, owner = node.args[0].value, node.func.value
        if key in START_FIELDS or (
            key in LORA_START_FIELDS and _is_lora(owner)):
          name = key
      if name:
        bad.append((module, node.lineno, node.col_offset, name))
  return [f"{m}:{line} reads {name}" for m, line, _, name in sorted(bad)]


def test_no_import_goes_up_a_layer():
  modules = _modules()
  unknown = sorted({_layer(m) for m in modules} - set(LAYERS))
  assert not unknown, f"place these in LAYERS: {unknown}"
  assert _upward(_imports(modules)) == []


def test_no_function_level_import_of_the_package():
  assert _function_level(_imports(_modules())) == []


def test_no_import_circle():
  assert _circles(_imports(_modules())) == []


def test_the_start_is_read_only_by_the_starts_layer():
  assert _start_reads(_modules()) == []


def test_trainer_stays_small():
  with open(os.path.join(PACKAGE, "train", "trainer.py")) as f:
    assert len(f.readlines()) < 400


@pytest.fixture
def bad_package(tmp_path):
  """A package with each kind of violation, to show the checks bite."""
  pkg = tmp_path / "encdec_jax"
  for sub in ("nn", "train", "starts"):
    (pkg / sub).mkdir(parents=True)
    (pkg / sub / "__init__.py").write_text("")
  (pkg / "__init__.py").write_text("")
  (pkg / "nn" / "a.py").write_text("from encdec_jax.train import b\n")
  (pkg / "train" / "b.py").write_text(
      "from encdec_jax.nn import a\n"
      "def f(config):\n"
      "  from encdec_jax.starts import c\n"
      "  return config.init_from or config.lora.get('adapter')\n"
      "def h(lora_config):\n"
      "  return lora_config.base\n")
  (pkg / "starts" / "c.py").write_text(
      "def g(config):\n  return config.lora.base\n")
  return _modules(str(pkg))


def test_the_checks_catch_each_violation(bad_package):
  imports = _imports(bad_package)
  assert _upward(imports) == [
      "encdec_jax.nn.a:1 imports encdec_jax.train.b, a higher layer"]
  assert _function_level(imports) == [
      "encdec_jax.train.b:3 imports encdec_jax.starts.c inside f()"]
  assert _circles(imports) == [["encdec_jax.nn.a", "encdec_jax.train.b"]]
  assert _start_reads(bad_package) == ["encdec_jax.train.b:4 reads init_from",
                                       "encdec_jax.train.b:4 reads adapter",
                                       "encdec_jax.train.b:6 reads base"]
