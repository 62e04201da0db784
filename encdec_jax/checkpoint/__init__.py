"""Everything about checkpoints: training steps, resume, encoders on their own.

  from encdec_jax import checkpoint
  manager = checkpoint.make_manager(workdir)
  checkpoint.save(manager, state, data_state, meta)
  state, data_state, step = checkpoint.resume(manager, target, meta)
  params, report = checkpoint.load_encoder(path, into, expected_spec=spec)

layout.py          the folders and item names, has_checkpoint, make_manager,
                   load_config
train_state.py     save / restore a step, its meta, remove_unfinished, set_aside
resume.py          the newest readable step; config.corrupt_checkpoint
fit.py             whether a readable step's tree fits the run (else refused)
encoder_spec.py    what an encoder must agree on with a model, and the error
encoder_source.py  finding an encoder: save_encoder dir, workdir or step
encoder.py         save_encoder / export_encoder / load_encoder
"""

from encdec_jax.checkpoint.encoder import (LoadReport, export_encoder,
                                           install_encoder_tokenizer,
                                           load_encoder,
                                           load_encoder_tokenizer,
                                           save_encoder)
from encdec_jax.checkpoint.encoder_spec import NO_VOCAB, encoder_spec
from encdec_jax.checkpoint.fit import (CheckpointMismatch, check_fits,
                                       saved_shapes, tree_differences)
from encdec_jax.checkpoint.layout import (CHECKPOINTS_DIR, ITEMS, SPEC_FILE,
                                          has_checkpoint, load_config,
                                          make_manager)
from encdec_jax.checkpoint.resume import CORRUPT_POLICIES, resume
from encdec_jax.checkpoint.train_state import (CheckpointWriteError,
                                               check_compatible, read_meta,
                                               remove_unfinished, restore,
                                               restore_params, save, set_aside,
                                               wait_until_committed)
