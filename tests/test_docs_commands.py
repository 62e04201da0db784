"""The commands in the README, docs/*.md and experiments/README.md point at
things that exist, so a reader can paste them: every `--config=PATH` (an
`:arm` suffix stripped), every `python -m MODULE` (a package needs its
`__main__`), every `python some/file.py` and every `launch/` script in a
fenced code block, and every relative link `](path#anchor)` in the text. The
README stays short enough to read in ten minutes. The modules and scripts
that the text quotes outside code blocks are checked as well.

The checks are plain functions, tested on small bad snippets below so that
they can fail. Nothing is imported but what `importlib.util.find_spec`
needs (a submodule's parent packages).
"""

import glob
import importlib.util
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 300

FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
CONFIG = re.compile(r"--config=([^\s\"'`]+)")
MODULE = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)(<?)")
SCRIPT = re.compile(r"\bpython3?\s+([\w./-]+\.py)\b")
LAUNCH = re.compile(r"(?<![\w/.-])(launch/[\w./-]+\.(?:sh|sbatch))\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def doc_files():
  return ([os.path.join(REPO, "README.md")]
          + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
          + [os.path.join(REPO, "experiments", "README.md")])


def code_blocks(text):
  """The fenced code blocks' contents, backslash-continued lines joined."""
  return [m.group(2).replace("\\\n", " ") for m in FENCE.finditer(text)]


def prose(text):
  """The text outside the fenced code blocks."""
  return FENCE.sub("", text)


def slug(heading):
  """GitHub's anchor for a heading: lower case, punctuation dropped,
  spaces to hyphens."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def anchors(text):
  seen, out = {}, set()
  for _, title in HEADING.findall(prose(text)):
    s = slug(title)
    n = seen.get(s, 0)
    seen[s] = n + 1
    out.add(s if n == 0 else f"{s}-{n}")
  return out


def module_problem(name):
  """Why `python -m name` would fail to start, or None."""
  try:
    spec = importlib.util.find_spec(name)
  except (ImportError, ValueError) as e:
    return f"{type(e).__name__}: {e}"
  if spec is None:
    return "not found"
  if spec.submodule_search_locations is not None:
    if importlib.util.find_spec(name + ".__main__") is None:
      return "a package without __main__"
  return None


def command_problems(block, configs=True):
  """What a code block names that does not exist, one line each, and the
  number of references checked."""
  problems, checked = [], 0
  for value in CONFIG.findall(block) if configs else ():
    if "$" in value or "<" in value:  # a shell variable or a placeholder
      continue
    path = value.split(":")[0]
    checked += 1
    if not os.path.isfile(os.path.join(REPO, path)):
      problems.append(f"--config={value}: no file {path}")
  for name, placeholder in MODULE.findall(block):
    if placeholder:  # encdec_jax.reports.<name>
      continue
    name = name.rstrip(".")
    checked += 1
    why = module_problem(name)
    if why:
      problems.append(f"python -m {name}: {why}")
  for path in SCRIPT.findall(block) + LAUNCH.findall(block):
    checked += 1
    if not os.path.isfile(os.path.join(REPO, path)):
      problems.append(f"{path}: no such file")
  return problems, checked


def link_problems(md_path, text):
  """Relative links of a Markdown file whose target or anchor is missing."""
  problems = []
  here = os.path.dirname(md_path)
  for target in LINK.findall(prose(text)):
    if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
      continue
    path, _, anchor = target.partition("#")
    full = os.path.normpath(os.path.join(here, path)) if path else md_path
    if not os.path.exists(full):
      problems.append(f"]({target}): no {os.path.relpath(full, REPO)}")
      continue
    if anchor and full.endswith(".md"):
      with open(full, encoding="utf-8") as f:
        if anchor not in anchors(f.read()):
          problems.append(f"]({target}): no heading #{anchor}")
  return problems


def file_problems(md_path):
  with open(md_path, encoding="utf-8") as f:
    text = f.read()
  problems, checked = [], 0
  for block in code_blocks(text):
    p, n = command_problems(block)
    problems += p
    checked += n
  # Commands quoted in the text too, but not their --config values:
  # docs/errors.md quotes missing config files on purpose.
  p, n = command_problems(prose(text), configs=False)
  return problems + p + link_problems(md_path, text), checked + n


@pytest.mark.parametrize("md_path", doc_files(),
                         ids=lambda p: os.path.relpath(p, REPO))
def test_commands_and_links_point_at_what_exists(md_path):
  problems, _ = file_problems(md_path)
  assert not problems, (os.path.relpath(md_path, REPO) + ":\n  "
                        + "\n  ".join(problems))


def test_the_docs_hold_commands_to_check():
  # A regex that stopped matching would pass every file with nothing checked.
  checked = sum(file_problems(p)[1] for p in doc_files())
  assert checked >= 50, checked


def test_the_readme_is_short():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    lines = f.read().count("\n")
  assert lines <= README_MAX_LINES, (
      f"README.md has {lines} lines; move detail into docs/ "
      f"(at most {README_MAX_LINES})")


def test_the_checks_catch_what_is_broken(tmp_path):
  block = ("python -m encdec_jax.main --config=experiments/nope.py:arm \\\n"
           "    --workdir=runs/x\n"
           "python -m encdec_jax.no_such_module\n"
           "python -m encdec_jax.bench --unit=train\n"
           "python -m encdec_jax.reports\n"
           "python -m encdec_jax.reports.<name> --runs=DIR\n"
           "bash launch/no_such.sh && python tests/no_such.py\n"
           "OUT=runs/bench launch/bench_vs_peers.sh\n")
  problems, checked = command_problems(block)
  assert checked == 8
  assert problems == [
      "--config=experiments/nope.py:arm: no file experiments/nope.py",
      "python -m encdec_jax.no_such_module: not found",
      "python -m encdec_jax.reports: a package without __main__",
      "tests/no_such.py: no such file",
      "launch/no_such.sh: no such file",
  ]
  md = tmp_path / "page.md"
  md.write_text("# A page\n\n## Its `parallel.py`: part\n\n"
                "[ok](page.md#its-parallelpy-part) [self](#a-page) "
                "[gone](gone.md) [bad anchor](#nowhere) "
                "[web](https://example.org/x)\n"
                "```\n[in code](ignored.md)\n# not a heading\n```\n",
                encoding="utf-8")
  assert link_problems(str(md), md.read_text(encoding="utf-8")) == [
      "](gone.md): no " + os.path.relpath(str(tmp_path / "gone.md"), REPO),
      "](#nowhere): no heading #nowhere",
  ]


def test_slugs_are_githubs():
  assert slug("Copying values never seen in training (`config.model.copy`)"
              ) == "copying-values-never-seen-in-training-configmodelcopy"
  assert slug("Transfer: does a pretrained encoder help with few labels? "
              "(ULMFiT)") == ("transfer-does-a-pretrained-encoder-help-with-"
                              "few-labels-ulmfit")
  assert anchors("# A\n## A\n") == {"a", "a-1"}
