"""Lines of text in and out: one input line is one example, and one output
line per input line, always.

Python's str.splitlines() also splits on \\v, \\f, \\x1c-\\x1e, \\x85, U+2028
and U+2029: a form feed inside a line would make it two, and every later
output would sit next to the wrong input. Here only '\\n' ends a line ('\\r\\n'
too; a final newline ends the last line, it does not start an empty one),
as the TSV reader (data/sources.py) does.
"""

BOM = b"\xef\xbb\xbf"
# Everything str.splitlines() splits on: an output line must hold none.
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_AS_SPACES = str.maketrans({c: " " for c in LINE_BREAKS})


def split_lines(data: bytes, where: str) -> list[str]:
  """The lines of UTF-8 `data` (a leading BOM dropped). An invalid byte is
  a ValueError naming `where:line`."""
  raw_lines = data.removeprefix(BOM).split(b"\n")
  if raw_lines[-1] == b"":  # the newline that ends the last line
    raw_lines.pop()
  lines = []
  for number, raw in enumerate(raw_lines, 1):
    try:
      lines.append(raw.removesuffix(b"\r").decode("utf-8"))
    except UnicodeDecodeError as e:
      raise ValueError(f"{where}:{number}: invalid UTF-8 at byte "
                       f"{e.start + 1} of the line; re-save it as UTF-8."
                       ) from None
  return lines


def one_line(text: str) -> str:
  """`text` with each line break (LINE_BREAKS) as a space: exactly one
  output line, whatever a model generated."""
  return text.translate(_AS_SPACES)
