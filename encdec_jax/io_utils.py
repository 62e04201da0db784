"""File writes a kill cannot tear; used from the data layer up."""

import os


def write_atomically(path: str, data: str | bytes) -> None:
  """`path` holds all of `data` or its old content, never a part: the data
  goes to a temporary file that is then renamed over it."""
  tmp = f"{path}.tmp"
  if isinstance(data, str):
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(data)
  else:
    with open(tmp, "wb") as f:
      f.write(data)
  os.replace(tmp, path)
