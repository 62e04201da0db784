"""Generating a TFDS dataset that two runs may ask for at once.

Two runs that share a data_dir (a sweep, two terminals) both find the
dataset missing and both generate it; TFDS writes each into its own
`incomplete.*` directory and renames it at the end, so the second rename
found the first one's directory and the second run died with
`FileExistsError: Cannot rename ...`. Here the second one uses the first
one's files instead: the data is the same (generated from fixed seeds).
"""

from typing import Callable

import tensorflow_datasets as tfds


def prepare(make_builder: Callable[[], tfds.core.DatasetBuilder]
            ) -> tfds.core.DatasetBuilder:
  """The builder `make_builder()` gives, its dataset generated unless it
  is there already (offline: no GCS)."""
  builder = make_builder()
  if builder.is_prepared():
    return builder
  try:
    builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  except FileExistsError:
    builder = make_builder()  # another process finished first
    if not builder.is_prepared():
      raise
  return builder
