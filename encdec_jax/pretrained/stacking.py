"""scan_layers' stacked parameter layout and the per-layer one of imports.

Imported models (and Hugging Face exports) name each layer (layers_0,
layers_1, ...); a model built with config.model.scan_layers holds one
`layers` subtree whose leaves carry a leading layer axis.
"""

import numpy as np


def stack_layers(flat: dict) -> dict:
  """{.../layers_{i}/...: x} -> {.../layers/...: stack of x over i} (the
  scan_layers layout)."""
  groups, out = {}, {}
  for path, value in flat.items():
    for j, part in enumerate(path):
      if part.startswith("layers_") and part[7:].isdigit():
        key = path[:j] + ("layers",) + path[j + 1:]
        groups.setdefault(key, {})[int(part[7:])] = value
        break
    else:
      out[path] = value
  for key, by_layer in groups.items():
    out[key] = np.stack([by_layer[i] for i in range(len(by_layer))])
  return out


def unstack_layers(flat: dict) -> dict:
  """The inverse of stack_layers."""
  out = {}
  for path, value in flat.items():
    if "layers" in path:
      j = path.index("layers")
      for i in range(value.shape[0]):
        out[path[:j] + (f"layers_{i}",) + path[j + 1:]] = value[i]
    else:
      out[path] = value
  return out

