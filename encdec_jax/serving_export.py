"""--mode=export_serving: a trained text model as a directory that jax alone
serves (encdec_jax/serving.py reads it; serving.json says what is in it).

It restores the run as --mode=decode does (train/inference.restore_latest)
and exports, with jax.export, the real decoding code of decoding/config.py
(make_decode_fn): `encode`, and the whole decode loop for greedy, beam (the
config's beam_size and length_penalty) and sampling (the config's
temperature, top_k, top_p; the seed and the batch index are inputs). The
params are an argument of every artifact, never constants in it: they are
written once, as params.safetensors.

Shapes: the batch size b and the source length s are symbolic (b <= 256,
s <= the bucket of config.max_source_length); the loader pads lines to the
run's bucket_boundaries as the pipeline does, so a served batch has the
shape --mode=decode gives it. The output length is the decoding length
(config.decode.max_new_tokens, by default config.max_decode_length).

The tokenizer's files are copied as the run read them (SentencePiece's
tokenizer.model, an imported BART's tokenizer.json, a Marian's source.spm,
target.spm and vocab.json), with the special ids the loader needs (pad,
EOS, BOS; the decoder start and forced tokens are baked in) and the task
prefix the sources are read with. An imported model's own generation
settings are in config.decode once the run is restored (starts/hf_import),
so they are baked in as --mode=decode applies them.

The directory is written as a temporary sibling, then renamed: a killed
export leaves no half directory at --output.
"""

import datetime
import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util
from jax import export
from safetensors.numpy import save_file

from encdec_jax import serving
from encdec_jax.checkpoint import output_dir
from encdec_jax.data import imported_tokenizers, pipeline
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.decoding.config import decode_settings, make_decode_fn
from encdec_jax.decoding.loop import PAD_ID
from encdec_jax.models.contract import special_ids
from encdec_jax.train import inference

MAX_BATCH_SIZE = 256  # the symbolic batch's bound, checked by the loader
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
_SEP = "/"  # params.safetensors names: the tree path joined


def check_platforms(platforms) -> tuple[str, ...]:
  """('cpu', then the others asked for, once each); a ValueError names an
  unknown one."""
  asked = [p.strip().lower() for p in platforms if p.strip()]
  unknown = sorted(set(asked) - set(KNOWN_PLATFORMS))
  if unknown:
    raise ValueError(f"--platforms: {', '.join(unknown)} is not a jax "
                     f"platform; use some of {', '.join(KNOWN_PLATFORMS)} "
                     "(cpu is always lowered for).")
  return tuple(dict.fromkeys(["cpu"] + asked))


WHAT = "the serving export"  # what output_dir calls --output


def _check_output(output: str) -> str:
  if output == "-" or not output.strip():
    raise ValueError("--mode=export_serving needs --output=DIR, a new "
                     "directory.")
  output = output_dir.check_new(output, WHAT)
  if not os.path.isdir(os.path.dirname(output)):
    raise FileNotFoundError(f"--output={output}: there is no directory "
                            f"{os.path.dirname(output)}; create it first.")
  return output


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def tokenizer_files(tokenizer) -> tuple[str, dict[str, bytes]]:
  """(serving.json's tokenizer kind, {file name: bytes} to ship): our
  SentencePiece model (an imported T5's spiece.model among them) or bytes,
  an imported BART's tokenizer.json, a Marian's source.spm, target.spm and
  vocab.json, each as the run read it."""
  if isinstance(tokenizer, tokenizer_lib.ByteTokenizer):
    return "bytes", {}
  if isinstance(tokenizer, tokenizer_lib.SentencePieceTokenizer):
    return "sentencepiece", {
        tokenizer_lib.TOKENIZER_FILES["sentencepiece"]: tokenizer.model_proto}
  for kind, cls in imported_tokenizers.CLASSES.items():
    if isinstance(tokenizer, cls):
      return kind, dict(tokenizer.files)
  raise ValueError(f"--mode=export_serving serves SentencePiece, byte, BART "
                   f"and Marian tokenizers; this run's is "
                   f"{type(tokenizer).__name__}: decode it in-process with "
                   "--mode=decode.")


def _tokenizer_entry(kind: str, files: dict[str, bytes],
                     tokenizer) -> dict:
  return {"kind": kind, "vocab_size": int(tokenizer.vocab_size),
          "files": {name: _sha256(data) for name, data in files.items()}}


def _special_ids(exp, config) -> dict:
  """The ids a server needs: what sources are padded with and end in, what
  the decoder starts from (baked in), the tokens the decoder forces (baked
  in, as --mode=decode applies the model's generation settings), and what
  the decode loop writes after EOS."""
  start_id = special_ids(exp.model)[1]
  tokenizer = exp.tokenizer
  settings = decode_settings(config)
  optional = lambda value: None if value is None else int(value)
  return {"pad": int(tokenizer_lib.pad_id_of(tokenizer)),
          "eos": int(tokenizer.eos_id), "decoder_start": int(start_id),
          "unk": optional(getattr(tokenizer, "unk_id", None)),
          "bos": optional(getattr(tokenizer, "bos_id", None)),
          "forced_bos": optional(settings["forced_bos_token_id"]),
          "forced_eos": optional(settings["forced_eos_token_id"]),
          "after_eos": PAD_ID}


def flat_params(params) -> dict[str, np.ndarray]:
  """name -> numpy array, the tree path joined with '/'."""
  flat = traverse_util.flatten_dict(params)
  bad = [k for k in flat if any(_SEP in part for part in k)]
  if bad:
    raise ValueError(f"param name {bad[0]} holds {_SEP!r}; it cannot be "
                     "written flat.")
  return {_SEP.join(k): np.asarray(v) for k, v in flat.items()}


def _tree(flat: dict):
  return traverse_util.unflatten_dict(
      {tuple(k.split(_SEP)): v for k, v in flat.items()})


def _decoder(exp, config, algorithm: str):
  """(make_decode_fn for `algorithm` with config.decode's other settings,
  the resolved settings to record). The raw config.decode is kept (it is
  resolved again as --mode=decode resolves it); only the choice of
  algorithm changes: Hugging Face's num_beams / do_sample, which would
  pick another, are cleared, num_beams kept as the beam size."""
  decode = dict(config.get("decode", {}))
  decode.update(algorithm=algorithm,
                beam_size=decode_settings(config)["beam_size"])
  for key in ("num_beams", "do_sample"):
    if key in decode:
      decode[key] = None
  variant = config.copy_and_resolve_references()
  with variant.unlocked():
    variant.decode = ml_collections.ConfigDict(decode)
  settings = decode_settings(variant)
  recorded = {"algorithm": algorithm}
  recorded.update({k: settings[k] for k in _RECORDED[algorithm] + _RULES
                   if k in settings})
  return make_decode_fn(exp.model, variant, exp.tokenizer.eos_id,
                        prompted=exp.task.prompted), recorded


# The settings each artifact bakes in, recorded in serving.json.
_RECORDED = {"greedy": (),
             "beam": ("beam_size", "length_penalty", "beam_scoring",
                      "early_stopping"),
             "sample": ("temperature", "top_k", "top_p")}
_RULES = ("max_new_tokens", "min_new_tokens", "repetition_penalty",
          "no_repeat_ngram_size", "bad_words_ids", "forced_bos_token_id",
          "forced_eos_token_id", "renormalize_logits")


def entry_points(exp, config) -> dict:
  """name -> (function of (flat params, inputs_BxS, *extra), extra input
  specs, settings): what each artifact computes."""

  def encode(flat, inputs_BxS):
    encoded = exp.model.apply({"params": _tree(flat)}, inputs_BxS,
                              method="encode")
    return {"hidden": encoded.hidden_BxSxD, "mask": encoded.mask_BxS}

  points = {"encode": (encode, [], {})}
  greedy_fn, greedy = _decoder(exp, config, "greedy")
  beam_fn, beam = _decoder(exp, config, "beam")
  sample_fn, sample = _decoder(exp, config, "sample")
  fixed_key = jax.random.key(0)  # unused by greedy and beam

  points["greedy"] = (
      lambda flat, inputs_BxS: greedy_fn(_tree(flat), inputs_BxS, fixed_key),
      [], greedy)
  points["beam"] = (
      lambda flat, inputs_BxS: beam_fn(_tree(flat), inputs_BxS, fixed_key),
      [], beam)
  scalar = jax.ShapeDtypeStruct((), jnp.int32)
  # Batch i of --mode=decode draws with fold_in(key(seed), i).
  points["sample"] = (
      lambda flat, inputs_BxS, seed, batch_index: sample_fn(
          _tree(flat), inputs_BxS,
          jax.random.fold_in(jax.random.key(seed), batch_index)),
      [("seed", scalar), ("batch_index", scalar)], sample)
  return points


def _aval_entry(name: str, aval) -> dict:
  return {"name": name, "dtype": str(aval.dtype),
          "shape": [d if isinstance(d, int) else str(d) for d in aval.shape]}


def _outputs(exported) -> list[dict]:
  avals = jax.tree_util.tree_unflatten(exported.out_tree, exported.out_avals)
  leaves = jax.tree_util.tree_flatten_with_path(avals)[0]
  return [_aval_entry(jax.tree_util.keystr(path, simple=True, separator="/")
                      or "tokens", aval) for path, aval in leaves]


def export_artifacts(exp, config, params_spec: dict,
                     platforms: tuple[str, ...]) -> tuple[dict, dict, dict]:
  """({name: serialized bytes}, {name: manifest entry}, limits)."""
  boundaries = sorted(config.bucket_boundaries)
  padded_max = pipeline.bucket_length(config.max_source_length, boundaries)
  limits = {"max_batch_size": MAX_BATCH_SIZE,
            "max_source_tokens": config.max_source_length,
            "source_buckets": [b for b in boundaries if b <= padded_max]}
  b, s = export.symbolic_shape(
      "b, s", constraints=(f"b <= {MAX_BATCH_SIZE}", f"s <= {padded_max}"))
  inputs_spec = jax.ShapeDtypeStruct((b, s), jnp.int32)
  blobs, entries = {}, {}
  for name, (fn, extra, settings) in entry_points(exp, config).items():
    exported = export.export(jax.jit(fn), platforms=platforms)(
        params_spec, inputs_spec, *[spec for _, spec in extra])
    blobs[name] = exported.serialize()
    entries[name] = dict(
        settings, file=f"{name}.jax_export",
        inputs=[{"name": "params", "file": serving.PARAMS_FILE},
                _aval_entry("inputs", inputs_spec)]
        + [_aval_entry(n, spec) for n, spec in extra],
        outputs=_outputs(exported))
  return blobs, entries, limits


def export_serving(config, workdir: str, output: str,
                   platforms=("cpu",)) -> dict:
  """Writes the served model of `workdir`'s latest checkpoint to the new
  directory `output`; returns its manifest (serving.json)."""
  platforms = check_platforms(platforms)
  output = _check_output(output)
  start = time.time()
  exp, params, step = inference.restore_latest(config, workdir)
  if not exp.task.decodes_text:
    raise ValueError(f"nothing to serve: {exp.task.decode_refusal}")
  kind, tokenizer_data = tokenizer_files(exp.tokenizer)
  flat = flat_params(params)
  params_spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                 for k, v in flat.items()}
  blobs, artifacts, limits = export_artifacts(exp, config, params_spec,
                                              platforms)
  manifest = {
      "format": serving.FORMAT, "format_version": serving.FORMAT_VERSION,
      "jax_version": jax.__version__, "platforms": list(platforms),
      "written": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "source": {"workdir": os.path.abspath(workdir), "step": int(step),
                 "task": exp.task.name,
                 "family": config.model.get("family", "transformer")},
      "prompted": exp.task.prompted,
      # The model's task prefix, read in front of every source (T5's
      # "summarize: ", config.decode.task), as the pipeline reads it.
      "source_prefix": pipeline.source_prefix(config),
      "tokenizer": _tokenizer_entry(kind, tokenizer_data, exp.tokenizer),
      "special_ids": _special_ids(exp, config),
      "params": {"file": serving.PARAMS_FILE, "count": len(flat),
                 "size": int(sum(v.size for v in flat.values())),
                 "naming": f"the params tree path joined with {_SEP!r}"},
      "batch_size": int(config.eval_batch_size), "limits": limits,
      "artifacts": artifacts}
  _write_directory(output, manifest, flat, blobs, tokenizer_data)
  print(f"exported step {step} of {workdir} (encode; greedy, beam "
        f"{artifacts['beam']['beam_size']}, sample) for "
        f"{', '.join(platforms)} in {time.time() - start:.1f} s to {output}; "
        f"serve it with: python -m encdec_jax.serving --export={output} "
        "--input=FILE --output=FILE")
  return manifest


def _write_directory(output: str, manifest: dict, flat: dict, blobs: dict,
                     tokenizer_data: dict[str, bytes]) -> None:
  """All files into a sibling of `output`, renamed onto it (output_dir)."""
  with output_dir.new_directory(output, WHAT) as tmp:
    save_file(flat, os.path.join(tmp, serving.PARAMS_FILE))
    for name, blob in blobs.items():
      with open(os.path.join(tmp, manifest["artifacts"][name]["file"]),
                "wb") as f:
        f.write(blob)
    for name, data in tokenizer_data.items():
      with open(os.path.join(tmp, name), "wb") as f:
        f.write(data)
    with open(os.path.join(tmp, serving.MANIFEST), "w",
              encoding="utf-8") as f:
      json.dump(manifest, f, indent=2)
