"""What the README tells a new user to install gets them what it then tells
them to run (`tensorboard --logdir runs` with no TensorBoard)."""

import os
import re
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_viz_extra_brings_the_tensorboard_the_readme_runs():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
  assert any(re.match(r"tensorboard\b", r) for r in extras["viz"])
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  for command in re.findall(r"[^`\n]*tensorboard --logdir[^`\n]*", readme):
    assert "pip install -e '.[viz]'" in command, command
