r"""Builds the tiny Hugging Face seq2seq models of tests/data/hf_tiny/ and
their PyTorch reference outputs. Needs torch + transformers (not the test
suite); on these machines:

  bash ../shared/bench/peers/setup.sh      # torch 2.13 CPU, transformers 5.23
  PEERS/.venv/bin/pip install sentencepiece tokenizers protobuf
  PEERS/.venv/bin/python tests/data/hf_tiny/make_fixtures.py

(where that folder is read-only, the same into any venv: python3 -m venv V
&& V/bin/pip install torch==2.13.0 && V/bin/pip install transformers==5.23.0
numpy sentencepiece tokenizers protobuf; pyproject's `hf-reference` extra
lists them). The output is deterministic: a rerun rewrites the same bytes.

Four randomly initialised models, each saved as a Hugging Face directory
(config.json, model.safetensors, generation_config.json, its tokenizer files)
next to reference.npz:

  t5_v11   T5 v1.1 / Flan-T5: gated-GELU (tanh) MLP, untied lm_head
  t5_v10   T5 v1.0: ReLU MLP, lm_head tied to the embedding (d_model^-0.5)
  bart     BART: learned positions (offset 2), layernorm_embedding, post-LN,
           GELU, biases, final_logits_bias, unscaled embeddings
  marian   opus-mt: sinusoidal positions, scaled embeddings, swish,
           final_logits_bias, pad (the last id) as decoder start, EOS = 0

The shapes are awkward on purpose: d_kv x heads != d_model (T5), encoder and
decoder depths differ, BART/Marian use other head counts and FFN widths in
the decoder than in the encoder, the model vocabulary of T5 is larger than
its tokenizer's (as 32128 vs 32100), and every weight is redrawn at O(1)
scale (norm scales around 1, non-zero biases, final_logits_bias and relative
position tables), so a wrong mapping cannot hide in small numbers. Random
models like these tend to repeat one token forever; tune_eos trades the
output rows of EOS and a token greedy emits, and/or raises the EOS logit a
little, until some greedy and some beam rows stop with EOS mid-sequence (the
others run to the length limit, where HF and we both rank live hypotheses by
log-probability: length_penalty=0).

reference.npz: input_ids / attention_mask (BxS, right-padded with the pad
id), decoder_input_ids (BxT, starting with the decoder start id),
encoder_hidden (BxSxD), logits (BxTxV), greedy and beam (generate's tokens
without the start token, pad after EOS), and the generate settings.
tokenizer_reference.json: sentences and the ids the model's own Hugging Face
tokenizer gives them. Versions are recorded in versions.json.

generation/CASE.json (generation_fixtures; alone with `make_fixtures.py
generation`): shipped-style generation configs on the saved models (BART like
bart-large-cnn, Marian like opus-mt, T5 like its summarization
task_specific_params, repetition penalty / bad words / early_stopping
"never" variants, scaled to the tiny models' lengths) and the tokens
generate() returns with no arguments (the config applies), with the tokens of
plain greedy decoding to show the settings change something;
generation/warpers.json: HF's sampling processors (repetition penalty,
temperature, top-k, top-p) on fixed logits, for the sampling path (whose
random draws differ from torch's).

transformers 5.23 quirks handled here: a T5 whose decoder depth differs from
its encoder's breaks the KV cache inside generate (IndexError in
cache_utils), so T5 generates with use_cache=False; T5Config forces
tie_word_embeddings=True, so the untied v1.1 lm_head is written into the
safetensors by hand and the model reloaded (from_pretrained unties weights
that differ in the file).
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import sentencepiece as spm
import tokenizers
import torch
import transformers
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, MAX_NEW = 3, 12
BEAMS = 3

CORPUS = """\
The quick brown fox jumps over the lazy dog.
A small model is easy to test and quick to load.
Translate English to German: the house is wonderful.
Summarize: studies have shown that owning a dog is good for you.
The weather today is cold, but tomorrow it will be warm again.
She reads a book in the garden while the children play.
We need more data to train a better translation model.
Numbers like 42 and 1999 appear in text as well.
Das Haus ist wunderbar und der Garten ist gross.
Ich lese ein Buch, waehrend die Kinder spielen.
Heute ist das Wetter kalt, aber morgen wird es warm.
Wir brauchen mehr Daten fuer ein besseres Modell.
""".splitlines()

SENTENCES = [
    "The house is wonderful.",
    "summarize: a dog is good for you",
    "Numbers like 42 appear in text.",
    "Unseen words: zebra quokka!",
]


def train_spm(path_prefix: str, vocab_size: int, lines=CORPUS,
              **kwargs) -> str:
  """A small SentencePiece model; identity normalisation keeps the file
  small (no 200 KB NFKC table)."""
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_prefix=path_prefix,
      vocab_size=vocab_size, model_type="unigram", num_threads=1,
      normalization_rule_name="identity", character_coverage=1.0,
      hard_vocab_limit=True, **kwargs)
  return path_prefix + ".model"


def redraw(model, gen: torch.Generator) -> None:
  """Every parameter and buffer (final_logits_bias) at O(1) scale."""
  with torch.no_grad():
    for name, p in list(model.named_parameters()) + [
        (n, b) for n, b in model.named_buffers() if "final_logits_bias" in n]:
      noise = torch.randn(p.shape, generator=gen)
      if "embed_positions" in name and "marian" in type(model).__name__.lower():
        continue  # Marian's sinusoidal table is fixed
      if "norm" in name and name.endswith("weight"):
        p.copy_(1.0 + 0.3 * noise)
      elif "final_logits_bias" in name:
        p.copy_(0.5 * noise)
      elif name.endswith("bias"):  # small: a large constant part of every
        p.copy_(0.1 * noise)       # state makes a random model degenerate
      elif "relative_attention_bias" in name:
        p.copy_(0.7 * noise)
      elif p.ndim == 2 and ("embed" in name or "shared" in name):
        p.copy_(noise)
      elif p.ndim == 2:  # Linear (out, in)
        p.copy_(1.3 * noise / p.shape[1] ** 0.5)
      else:
        raise ValueError(f"no rule for {name} {tuple(p.shape)}")


def random_batch(gen, vocab, lengths, low, eos, pad, max_len):
  ids = torch.full((len(lengths), max_len), pad, dtype=torch.long)
  for row, n in enumerate(lengths):
    ids[row, :n - 1] = torch.randint(low, vocab, (n - 1,), generator=gen)
    ids[row, n - 1] = eos
  return ids, (ids != pad).long()


def generate_settings(model, **extra):
  """Plain greedy / beam search: no forced BOS/EOS, n-gram blocking, minimum
  length or bad words, whatever the config's generation defaults say."""
  cfg = model.config
  return dict(max_new_tokens=MAX_NEW, do_sample=False,
              decoder_start_token_id=cfg.decoder_start_token_id,
              eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
              forced_bos_token_id=None, forced_eos_token_id=None,
              no_repeat_ngram_size=0, min_length=0, bad_words_ids=None,
              repetition_penalty=1.0, length_penalty=0.0,
              early_stopping=False, **extra)


def strip_start(seqs: torch.Tensor, eos: int, pad: int) -> np.ndarray:
  """generate's rows without the start token, pad after the first EOS,
  padded to MAX_NEW."""
  out = np.full((seqs.shape[0], MAX_NEW), pad, np.int64)
  for r, row in enumerate(seqs[:, 1:].tolist()):
    for t, tok in enumerate(row):
      out[r, t] = tok
      if tok == eos:
        break
  return out


def outputs(model, batch, dec_in, use_cache):
  ids, mask = batch
  with torch.no_grad():
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_in,
                output_hidden_states=False)
    enc = model.get_encoder()(input_ids=ids, attention_mask=mask)
    greedy = model.generate(input_ids=ids, attention_mask=mask, num_beams=1,
                            use_cache=use_cache, **generate_settings(model))
    beam = model.generate(input_ids=ids, attention_mask=mask,
                          num_beams=BEAMS, use_cache=use_cache,
                          **generate_settings(model))
  cfg = model.config
  return dict(encoder_hidden=enc.last_hidden_state.numpy(),
              logits=out.logits.numpy(),
              greedy=strip_start(greedy, cfg.eos_token_id, cfg.pad_token_id),
              beam=strip_start(beam, cfg.eos_token_id, cfg.pad_token_id))


def ends_well(result, eos) -> bool:
  """Some greedy and some beam rows end with EOS, after at least one other
  token (random tiny models tend to loop on one token and never stop)."""
  for key in ("greedy", "beam"):
    stopped = 0
    for row in result[key]:
      hits = np.flatnonzero(row == eos)
      stopped += bool(len(hits) and hits[0] >= 1)
    if stopped < 1:
      return False
  return True


def tune_eos(model, batch, dec_in, use_cache, swap_rows, raise_eos):
  """Makes EOS come out mid-sequence: a token k that greedy decoding emits
  trades output rows with EOS (swap_rows(k), undone if it does not help),
  plus a small raise of the EOS logit, until ends_well."""
  eos = model.config.eos_token_id
  result = outputs(model, batch, dec_in, use_cache)
  emitted = np.concatenate([result["greedy"].ravel(), result["beam"].ravel()])
  counts = np.bincount(emitted, minlength=model.config.vocab_size)
  specials = {eos, model.config.pad_token_id,
              model.config.decoder_start_token_id}
  candidates = [k for k in np.argsort(-counts, kind="stable")
                if counts[k] and k not in specials]
  for k in [None] + candidates[:12]:
    if k is not None:
      swap_rows(int(k))
    for step, amount in enumerate((0.0, 0.1, 0.1, 0.1, 0.2, 0.2)):
      raise_eos(amount)
      result = outputs(model, batch, dec_in, use_cache)
      if ends_well(result, eos):
        return result, f"rows of EOS and {k} swapped, EOS raised {step}x"
    raise_eos(-0.7)
    if k is not None:
      swap_rows(int(k))
  raise RuntimeError("no swap/raise makes every row end with EOS")


def swapper(*tensors_and_axes):
  """swap_rows(k): exchanges entries eos and k of each (tensor, axis)."""

  def swap(eos, k):
    with torch.no_grad():
      for tensor, axis in tensors_and_axes:
        a = tensor.select(axis, eos).clone()
        tensor.select(axis, eos).copy_(tensor.select(axis, k))
        tensor.select(axis, k).copy_(a)

  return swap


def save(model, tokenizer, name, batch, dec_in, result, settings_extra):
  out = os.path.join(HERE, name)
  shutil.rmtree(out, ignore_errors=True)
  model.save_pretrained(out)
  tokenizer.save_pretrained(out)
  ids, mask = batch
  np.savez_compressed(
      os.path.join(out, "reference.npz"), input_ids=ids.numpy(),
      attention_mask=mask.numpy(), decoder_input_ids=dec_in.numpy(),
      num_beams=BEAMS, max_new_tokens=MAX_NEW, **result)
  tok_ref = {"sentences": SENTENCES,
             "input_ids": [tokenizer(s)["input_ids"] for s in SENTENCES]}
  if name == "marian":
    tok_ref["target_ids"] = [tokenizer(text_target=s)["input_ids"]
                             for s in SENTENCES]
  with open(os.path.join(out, "tokenizer_reference.json"), "w") as f:
    json.dump(tok_ref, f, indent=1)
  # Keep the fixtures small: drop what neither side reads.
  for extra in ("special_tokens_map.json", "added_tokens.json"):
    if os.path.exists(os.path.join(out, extra)):
      os.remove(os.path.join(out, extra))
  print(f"{name}: {settings_extra}; greedy {result['greedy'].tolist()}")


def reload(model, untie_lm_head: torch.Tensor | None = None):
  """The model as from_pretrained gives it (optionally with an untied
  lm_head written into the file)."""
  tmp = tempfile.mkdtemp()
  model.save_pretrained(tmp)
  if untie_lm_head is not None:
    path = os.path.join(tmp, "model.safetensors")
    tensors = load_file(path)
    tensors["lm_head.weight"] = untie_lm_head.contiguous()
    save_file(tensors, path, metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json")) as f:
      cfg = json.load(f)
    cfg["tie_word_embeddings"] = False
    cfg.pop("scale_decoder_outputs", None)
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(cfg, f)
  model = type(model).from_pretrained(tmp).eval()
  shutil.rmtree(tmp)
  return model


def mean_decoder_state(model, batch, dec_in):
  with torch.no_grad():
    out = model(input_ids=batch[0], attention_mask=batch[1],
                decoder_input_ids=dec_in, output_hidden_states=True)
  h = out.decoder_hidden_states[-1].reshape(-1, out.decoder_hidden_states[-1]
                                            .shape[-1]).mean(0)
  return h / h.norm()


def make_t5(name, gen, *, gated, tied, d_model, d_kv, heads, d_ff, layers,
            dec_layers):
  tmp = tempfile.mkdtemp()
  sp_model = train_spm(os.path.join(tmp, "spiece"), 60,
                       pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
  # transformers 5 converts spiece.model to a tokenizers Unigram on load.
  tokenizer = transformers.T5Tokenizer.from_pretrained(tmp, extra_ids=4)
  assert len(tokenizer) == 64, len(tokenizer)
  # A model vocabulary larger than the tokenizer's (as t5's 32128 > 32100).
  vocab = len(tokenizer) + 6
  config = transformers.T5Config(
      vocab_size=vocab, d_model=d_model, d_kv=d_kv, num_heads=heads,
      d_ff=d_ff, num_layers=layers, num_decoder_layers=dec_layers,
      relative_attention_num_buckets=8, relative_attention_max_distance=12,
      feed_forward_proj="gated-gelu" if gated else "relu",
      tie_word_embeddings=tied, dropout_rate=0.0, decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(config).eval()
  redraw(model, gen)
  model = reload(model, None if tied else
                 torch.randn((vocab, d_model), generator=gen))
  assert (model.lm_head.weight is model.shared.weight) == tied
  batch = random_batch(gen, vocab, [14, 9, 11], 3, 1, 0, 14)
  dec_in = torch.cat([torch.zeros((BATCH, 1), dtype=torch.long),
                      torch.randint(3, vocab, (BATCH, 7), generator=gen)], 1)
  direction = mean_decoder_state(model, batch, dec_in)
  row = model.lm_head.weight if not tied else model.shared.weight
  scale = d_model ** 0.5 if tied else 1.0

  def raise_eos(amount):
    with torch.no_grad():
      row[1] += amount * scale * direction * 4

  swap = swapper((row, 0))
  # Unequal depths: transformers 5.23's cache breaks inside generate.
  result, how = tune_eos(model, batch, dec_in, False,
                         lambda k: swap(1, k), raise_eos)
  save(model, tokenizer, name, batch, dec_in, result, how)
  # Real T5 directories ship spiece.model (what we read) and tokenizer.json.
  shutil.copy(sp_model, os.path.join(HERE, name, "spiece.model"))
  shutil.rmtree(tmp)


def make_bart(gen):
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(
      CORPUS, vocab_size=300, min_frequency=2,
      special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
  tmp = tempfile.mkdtemp()
  bpe.save_model(tmp)
  with open(os.path.join(tmp, "vocab.json")) as f:
    bpe_vocab = json.load(f)
  with open(os.path.join(tmp, "merges.txt")) as f:
    merges = [tuple(line.split()) for line in f
              if line.strip() and not line.startswith("#")]
  # transformers 5: BartTokenizer is RobertaTokenizer on tokenizers' BPE.
  tokenizer = transformers.BartTokenizer(vocab=bpe_vocab, merges=merges)
  assert tokenizer.pad_token_id == 1 and tokenizer.eos_token_id == 2
  vocab = len(tokenizer)
  config = transformers.BartConfig(
      vocab_size=vocab, d_model=16, encoder_layers=2, decoder_layers=3,
      encoder_attention_heads=4, decoder_attention_heads=2,
      encoder_ffn_dim=24, decoder_ffn_dim=20, max_position_embeddings=32,
      activation_function="gelu", scale_embedding=False, dropout=0.0,
      attention_dropout=0.0, activation_dropout=0.0)
  model = transformers.BartForConditionalGeneration(config).eval()
  redraw(model, gen)
  model = reload(model)
  batch = random_batch(gen, vocab, [13, 8, 11], 3, 2, 1, 13)
  dec_in = torch.cat([torch.full((BATCH, 1), 2, dtype=torch.long),
                      torch.randint(3, vocab, (BATCH, 6), generator=gen)], 1)

  def raise_eos(amount):
    with torch.no_grad():
      model.final_logits_bias[0, 2] += amount * 4

  swap = swapper((model.model.shared.weight, 0), (model.final_logits_bias, 1))
  result, how = tune_eos(model, batch, dec_in, True, lambda k: swap(2, k),
                         raise_eos)
  save(model, tokenizer, "bart", batch, dec_in, result, how)
  shutil.rmtree(tmp)


def make_marian(gen):
  tmp = tempfile.mkdtemp()
  english, german = CORPUS[:8], CORPUS[8:] + CORPUS[:2]
  source = train_spm(os.path.join(tmp, "source"), 70, lines=english,
                     unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1)
  target = train_spm(os.path.join(tmp, "target"), 60, lines=german,
                     unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1)
  pieces = ["</s>", "<unk>"]
  for path in (source, target):
    sp = spm.SentencePieceProcessor(model_file=path)
    for i in range(sp.get_piece_size()):
      piece = sp.id_to_piece(i)
      if piece not in pieces and piece != "<unk>":
        pieces.append(piece)
  pieces.append("<pad>")
  with open(os.path.join(tmp, "vocab.json"), "w") as f:
    json.dump({p: i for i, p in enumerate(pieces)}, f)
  tokenizer = transformers.MarianTokenizer(
      source_spm=source, target_spm=target,
      vocab=os.path.join(tmp, "vocab.json"))
  vocab = len(pieces)
  pad = vocab - 1
  config = transformers.MarianConfig(
      vocab_size=vocab, d_model=16, encoder_layers=3, decoder_layers=2,
      encoder_attention_heads=2, decoder_attention_heads=4,
      encoder_ffn_dim=20, decoder_ffn_dim=28, max_position_embeddings=40,
      activation_function="swish", scale_embedding=True, dropout=0.0,
      attention_dropout=0.0, activation_dropout=0.0, pad_token_id=pad,
      decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0)
  model = transformers.MarianMTModel(config).eval()
  redraw(model, gen)
  model = reload(model)
  batch = random_batch(gen, pad, [12, 7, 10], 2, 0, pad, 12)
  dec_in = torch.cat([torch.full((BATCH, 1), pad, dtype=torch.long),
                      torch.randint(2, pad, (BATCH, 6), generator=gen)], 1)

  def raise_eos(amount):
    with torch.no_grad():
      model.final_logits_bias[0, 0] += amount * 4

  swap = swapper((model.model.shared.weight, 0), (model.final_logits_bias, 1))
  result, how = tune_eos(model, batch, dec_in, True, lambda k: swap(0, k),
                         raise_eos)
  save(model, tokenizer, "marian", batch, dec_in, result, how)
  shutil.rmtree(tmp)


FAMILIES = ("t5_v11", "t5_v10", "bart", "marian")
ROUNDED = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def rounding_digest(tensors: dict) -> str:
  """sha256 of the tensors' names and raw little-endian bytes, in name
  order: the tests round model.safetensors themselves (numpy, ml_dtypes)
  and check they made these very tensors."""
  import hashlib
  digest = hashlib.sha256()
  for name in sorted(tensors):
    t = tensors[name].contiguous()
    digest.update(name.encode())
    digest.update(t.view(torch.int16 if t.element_size() == 2 else t.dtype)
                  .numpy().tobytes())
  return digest.hexdigest()


def rounded_fixtures():
  """NAME/rounded.npz: the PyTorch reference of each model whose weights
  are rounded to float16 / bfloat16 (model.safetensors cast, as a float16
  or bfloat16 checkpoint holds them) and loaded as float32
  (from_pretrained(dtype=torch.float32): transformers 5 defaults to
  dtype="auto", i.e. the file's dtype; float32 is what our import gives by
  default): DTYPE_encoder_hidden, DTYPE_logits, DTYPE_greedy on
  reference.npz's inputs, and DTYPE_sha256 (rounding_digest)."""
  for name in FAMILIES:
    src = os.path.join(HERE, name)
    cls = (transformers.T5ForConditionalGeneration if name.startswith("t5")
           else transformers.AutoModelForSeq2SeqLM)
    with np.load(os.path.join(src, "reference.npz")) as npz:
      batch = (torch.as_tensor(npz["input_ids"]),
               torch.as_tensor(npz["attention_mask"]))
      dec_in = torch.as_tensor(npz["decoder_input_ids"])
    stored = load_file(os.path.join(src, "model.safetensors"))
    record = {}
    for label, dtype in ROUNDED.items():
      tmp = tempfile.mkdtemp()
      shutil.copy(os.path.join(src, "config.json"), tmp)
      rounded = {k: v.to(dtype) for k, v in stored.items()}
      save_file(rounded, os.path.join(tmp, "model.safetensors"),
                metadata={"format": "pt"})
      model = cls.from_pretrained(tmp, dtype=torch.float32).eval()
      state = model.state_dict()
      for k, v in rounded.items():  # loaded as the rounded values
        assert state[k].dtype == torch.float32, k
        assert torch.equal(state[k], v.float()), (name, label, k)
      result = outputs(model, batch, dec_in, not name.startswith("t5"))
      record.update({f"{label}_encoder_hidden": result["encoder_hidden"],
                     f"{label}_logits": result["logits"],
                     f"{label}_greedy": result["greedy"],
                     f"{label}_sha256": np.array(rounding_digest(rounded))})
      shutil.rmtree(tmp)
      print(f"{name} {label}: greedy {result['greedy'].tolist()}")
    np.savez_compressed(os.path.join(src, "rounded.npz"), **record)


def relative_buckets():
  """T5's bucket ids of relative positions -300..300 for the real models'
  settings (32 buckets, max distance 128), both directions: PyTorch's
  float32 log decides the bucket borders, so they are checked exactly."""
  from transformers.models.t5.modeling_t5 import T5Attention
  relative = torch.arange(-300, 301)
  np.savez_compressed(
      os.path.join(HERE, "t5_buckets.npz"), relative=relative.numpy(),
      **{f"bidirectional_{b}": T5Attention._relative_position_bucket(
          relative, bidirectional=b, num_buckets=32,
          max_distance=128).numpy().astype(np.int8) for b in (True, False)})


def torch_bin_fixtures():
  """torch_bin/: what torch.save itself writes, for test_weight_files (which
  reads .bin files without torch): real.bin, a state dict (an OrderedDict
  with _metadata, as save_pretrained(safe_serialization=False) writes) of
  float32 / float16 / bfloat16 / int64 / bool tensors, a Parameter, a 0-d
  tensor and views that share one storage (transposed, offset windows);
  real.safetensors, the same tensors (copied apart) by safetensors.torch;
  legacy.bin, a pre-1.6 (non-zip) file. torch.save writes a random
  serialization_id into real.bin, so only this file's bytes change on a
  rerun (its tensors do not)."""
  import collections
  out = os.path.join(HERE, "torch_bin")
  os.makedirs(out, exist_ok=True)
  gen = torch.Generator().manual_seed(20261207)
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
  half = torch.randn(4, 5, generator=gen).half()
  bf16 = torch.randn(3, 7, generator=gen).bfloat16()
  sd = collections.OrderedDict()
  sd["linear.weight"] = torch.nn.Parameter(torch.randn(3, 4, generator=gen))
  sd["linear.bias"] = torch.randn(3, generator=gen)
  sd["half"] = half
  sd["half.window"] = half[1:3, 1:]  # offset 6, strides (5, 1)
  sd["bf16"] = bf16
  sd["bf16.transposed"] = bf16[:, 2:].t()  # offset 2, strides (1, 7)
  sd["base.transposed"] = base.t()
  sd["base.window"] = base[1:, 2:5]
  sd["base.row"] = base[2]  # contiguous, offset 12
  sd["ids"] = torch.tensor([1, -2, 3, 2**40], dtype=torch.int64)
  sd["mask"] = torch.tensor([True, False, True])
  sd["scalar"] = torch.tensor(3.5)
  sd._metadata = {"": {"version": 1}, "linear": {"version": 1}}
  torch.save(sd, os.path.join(out, "real.bin"))
  save_file({k: v.detach().contiguous().clone() for k, v in sd.items()},
            os.path.join(out, "real.safetensors"), metadata={"format": "pt"})
  torch.save(collections.OrderedDict(w=torch.ones(2, 2)),
             os.path.join(out, "legacy.bin"),
             _use_new_zipfile_serialization=False)


GENERATION_CASES = {
    # bart-large-cnn's generation_config.json, lengths scaled to the tiny
    # model's 32 positions.
    "bart_cnn": dict(model="bart", generation_config=dict(
        num_beams=4, length_penalty=2.0, max_length=20, min_length=9,
        no_repeat_ngram_size=3, early_stopping=True, forced_bos_token_id=0,
        forced_eos_token_id=2)),
    # opus-mt's: beam 4, the pad id a bad word, forced EOS, renormalised.
    "marian_opus": dict(model="marian", generation_config=dict(
        num_beams=4, max_length=16, bad_words_ids=[[94]],
        forced_eos_token_id=0, renormalize_logits=True)),
    # t5-small's config.json task_specific_params["summarization"] (its
    # prefix is the inputs'); no generation_config.json.
    "t5_summarization": dict(model="t5_v11", task="summarization",
                             generation_config=None, config_overrides=dict(
        task_specific_params=dict(summarization=dict(
            early_stopping=True, length_penalty=2.0, max_length=14,
            min_length=6, no_repeat_ngram_size=3, num_beams=4,
            prefix="summarize: ")))),
    # Greedy with a repetition penalty, a multi-token bad word and
    # min_new_tokens (processors on the raw logits).
    "t5_repetition": dict(model="t5_v10", generation_config=dict(
        repetition_penalty=1.6, min_new_tokens=5, max_new_tokens=11,
        bad_words_ids=[[5, 9], [12]])),
    # Beam with early_stopping="never", a repetition penalty and forced EOS.
    "t5_never": dict(model="t5_v10", generation_config=dict(
        num_beams=3, length_penalty=0.5, early_stopping="never",
        repetition_penalty=1.3, max_length=10, min_length=4,
        forced_eos_token_id=1,
        no_repeat_ngram_size=2)),
}


def generation_fixtures():
  """generation/: generate()'s tokens under each GENERATION_CASES config
  (set as the model's generation_config, generate() called with the inputs
  alone), and HF's sampling processors on fixed logits."""
  out_dir = os.path.join(HERE, "generation")
  os.makedirs(out_dir, exist_ok=True)
  models = {}
  for case, spec in GENERATION_CASES.items():
    name = spec["model"]
    if name not in models:
      cls = (transformers.T5ForConditionalGeneration if name.startswith("t5")
             else transformers.AutoModelForSeq2SeqLM)
      models[name] = cls.from_pretrained(os.path.join(HERE, name)).eval()
    model = models[name]
    cfg = model.config
    with np.load(os.path.join(HERE, name, "reference.npz")) as npz:
      ids, mask = (torch.as_tensor(npz["input_ids"]),
                   torch.as_tensor(npz["attention_mask"]))
    ids_keys = dict(decoder_start_token_id=cfg.decoder_start_token_id,
                    eos_token_id=cfg.eos_token_id,
                    pad_token_id=cfg.pad_token_id,
                    use_cache=not name.startswith("t5"))
    settings = dict(spec["generation_config"] or {})
    if spec.get("task"):  # what the pipelines do with the task's entry
      settings = dict(spec["config_overrides"]["task_specific_params"][
          spec["task"]])
      settings.pop("prefix")
    model.generation_config = transformers.GenerationConfig(
        **ids_keys, **settings)
    with torch.no_grad():
      tokens = model.generate(input_ids=ids, attention_mask=mask)
      model.generation_config = transformers.GenerationConfig(
          **ids_keys, max_new_tokens=tokens.shape[1] - 1)
      plain = model.generate(input_ids=ids, attention_mask=mask)
    until_eos = lambda rows: [
        r[:r.index(cfg.eos_token_id) + 1] if cfg.eos_token_id in r else r
        for r in rows[:, 1:].tolist()]
    record = dict(spec, input_ids=ids.tolist(), attention_mask=mask.tolist(),
                  tokens=until_eos(tokens), plain_greedy=until_eos(plain))
    assert record["tokens"] != record["plain_greedy"], (case, record)
    assert max(len(r) for r in record["tokens"]) > 3, case
    with open(os.path.join(out_dir, f"{case}.json"), "w") as f:
      json.dump(record, f, indent=1)
    print(f"generation {case}: {record['tokens']}")
  warpers(out_dir)


def warpers(out_dir):
  """HF's sampling processors, in generate's order, on fixed logits."""
  from transformers.generation import logits_process as lp
  gen = torch.Generator().manual_seed(20261208)
  logits = torch.randn((6, 40), generator=gen) * 3
  logits[0, 7] = logits[0, 8]  # a tie at the top-k border is kept
  history = torch.randint(0, 40, (6, 5), generator=gen)
  history[:, 0] = 0  # the decoder start token, as in an encoder-decoder
  cases = []
  for penalty, temperature, top_k, top_p in ((1.0, 1.0, 0, 0.9),
                                             (1.4, 0.7, 5, 1.0),
                                             (1.2, 1.3, 12, 0.6),
                                             (1.0, 0.5, 0, 0.3)):
    scores = logits.clone()
    steps = []
    if penalty != 1.0:
      steps.append(lp.RepetitionPenaltyLogitsProcessor(penalty))
    if temperature != 1.0:
      steps.append(lp.TemperatureLogitsWarper(temperature))
    if top_k:
      steps.append(lp.TopKLogitsWarper(top_k))
    if top_p < 1.0:
      steps.append(lp.TopPLogitsWarper(top_p))
    for step in steps:
      scores = step(history, scores)
    cases.append(dict(repetition_penalty=penalty, temperature=temperature,
                      top_k=top_k, top_p=top_p,
                      scores=[[None if not np.isfinite(v) else v
                               for v in row] for row in scores.tolist()]))
  with open(os.path.join(out_dir, "warpers.json"), "w") as f:
    json.dump(dict(logits=logits.tolist(), history=history.tolist(),
                   cases=cases), f)


def main():
  torch.set_num_threads(1)
  if sys.argv[1:] == ["generation"]:
    generation_fixtures()
    return
  if sys.argv[1:] == ["rounded"]:
    rounded_fixtures()
    return
  relative_buckets()
  gen = torch.Generator().manual_seed(20261129)
  make_t5("t5_v11", gen, gated=True, tied=False, d_model=16, d_kv=6, heads=3,
          d_ff=20, layers=2, dec_layers=3)
  make_t5("t5_v10", gen, gated=False, tied=True, d_model=12, d_kv=5, heads=4,
          d_ff=18, layers=3, dec_layers=2)
  make_bart(gen)
  make_marian(gen)
  rounded_fixtures()
  torch_bin_fixtures()
  generation_fixtures()
  with open(os.path.join(HERE, "versions.json"), "w") as f:
    json.dump({"torch": torch.__version__,
               "transformers": transformers.__version__,
               "sentencepiece": spm.__version__,
               "tokenizers": tokenizers.__version__,
               "python": sys.version.split()[0]}, f, indent=1)


if __name__ == "__main__":
  main()
