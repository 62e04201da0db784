"""BERT-family encoders from Hugging Face files, as our TransformerEncoder.

A BERT model directory (config.json, model.safetensors, tokenizer.json)
becomes a save_encoder directory: nothing else (no torch, no transformers) is
needed to read it, and it loads like any encoder of ours (load_encoder,
--config.init_encoder). Our encoder is BERT when configured as one
(encoder_fields): post-LayerNorm sublayers with no final LayerNorm, learned
absolute positions, token-type embeddings and a LayerNorm after the embedding
sum, exact-erf GELU, LayerNorm eps 1e-12, id 0 ([PAD]) masked as keys.

Name map (PyTorch Linear weights are (out, in), so they are transposed; the
q/k/v/out projections are split into heads, as nn.attention's DenseGeneral):
  embeddings.word_embeddings          embedder/token_embed/embedding
  embeddings.position_embeddings      embedder/position_embed/pos_embedding
  embeddings.token_type_embeddings    embedder/token_type_embed/embedding
  embeddings.LayerNorm                embedder/embedding_norm
  encoder.layer.{i}.attention.self.{query,key,value}
                                      layers_{i}/attention/{query,key,value}
  encoder.layer.{i}.attention.output.dense      layers_{i}/attention/out
  encoder.layer.{i}.attention.output.LayerNorm  layers_{i}/attention_norm
  encoder.layer.{i}.intermediate.dense          layers_{i}/mlp/intermediate
  encoder.layer.{i}.output.dense                layers_{i}/mlp/output
  encoder.layer.{i}.output.LayerNorm            layers_{i}/mlp_norm
The pooler (a tanh layer on [CLS], `pooler.*`) is not part of the encoder:
sentence-transformers' models pool by the mean and never use it.
"""

import json
import os

import numpy as np

from encdec_jax import checkpoint
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.pretrained import hf

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
NOT_ENCODER = ("pooler.", "embeddings.position_ids")  # Left out on purpose.
FILES = ("config.json", "model.safetensors", "tokenizer.json")


def config_from_hf(hf: dict) -> TransformerConfig:
  """Our encoder's config for a BERT config.json (dropout rates included)."""

  def need(key, allowed):
    if hf.get(key) not in allowed:
      raise ValueError(f"config.json: {key}={hf.get(key)!r} is not supported; "
                       f"a BERT encoder here needs one of {list(allowed)}.")
    return hf[key]

  need("model_type", ("bert",))
  need("position_embedding_type", ("absolute", None))
  hidden = hf["hidden_size"]
  return TransformerConfig(
      vocab_size=hf["vocab_size"], emb_dim=hidden, qkv_dim=hidden,
      num_heads=hf["num_attention_heads"], mlp_dim=hf["intermediate_size"],
      num_encoder_layers=hf["num_hidden_layers"],
      max_len=hf["max_position_embeddings"], position_embedding="learned",
      num_token_types=hf["type_vocab_size"], embedding_layernorm=True,
      pre_layernorm=False,
      activation=ACTIVATIONS[need("hidden_act", ACTIVATIONS)],
      layernorm_epsilon=hf["layer_norm_eps"], use_bias=True,
      scale_embeddings=False, dropout_rate=hf["hidden_dropout_prob"],
      attention_dropout_rate=hf["attention_probs_dropout_prob"])


def read_config(model_dir: str) -> TransformerConfig:
  with open(os.path.join(model_dir, "config.json")) as f:
    return config_from_hf(json.load(f))


def read_weights(path: str) -> dict[str, np.ndarray]:
  """All tensors of a .safetensors file as numpy arrays (no torch)."""
  return hf.read_tensors(path)


def encoder_params(tensors: dict[str, np.ndarray],
                   config: TransformerConfig) -> dict:
  """params['encoder'] (numpy float32) from BERT's tensors (names with or
  without a 'bert.' prefix). Every tensor must be used, apart from
  NOT_ENCODER, and have the shape `config` implies."""
  tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
  used = set()
  d, heads, head_dim = config.emb_dim, config.num_heads, config.head_dim

  def take(name, shape, transform=lambda w: w):
    if name not in tensors:
      raise ValueError(f"model.safetensors has no tensor {name!r}; is it a "
                       "BERT model with this config.json?")
    used.add(name)
    value = np.ascontiguousarray(transform(tensors[name]), np.float32)
    if value.shape != shape:
      raise ValueError(f"model.safetensors: {name} gives shape {value.shape}, "
                       f"config.json implies {shape}.")
    return value

  def dense(prefix, in_shape, out_shape):  # PyTorch (out, in) -> Flax
    return {"kernel": take(f"{prefix}.weight", (*in_shape, *out_shape),
                           lambda w: w.T.reshape(*in_shape, *out_shape)),
            "bias": take(f"{prefix}.bias", out_shape,
                         lambda b: b.reshape(out_shape))}

  def norm(prefix):
    return {"scale": take(f"{prefix}.weight", (d,)),
            "bias": take(f"{prefix}.bias", (d,))}

  params = {"embedder": {
      "token_embed": {"embedding": take("embeddings.word_embeddings.weight",
                                        (config.vocab_size, d))},
      "position_embed": {"pos_embedding": take(
          "embeddings.position_embeddings.weight", (config.max_len, d))},
      "token_type_embed": {"embedding": take(
          "embeddings.token_type_embeddings.weight",
          (config.num_token_types, d))},
      "embedding_norm": norm("embeddings.LayerNorm")}}
  for i in range(config.num_encoder_layers):
    p = f"encoder.layer.{i}"
    params[f"layers_{i}"] = {
        "attention": {
            **{n: dense(f"{p}.attention.self.{n}", (d,), (heads, head_dim))
               for n in ("query", "key", "value")},
            "out": dense(f"{p}.attention.output.dense", (heads, head_dim),
                         (d,))},
        "attention_norm": norm(f"{p}.attention.output.LayerNorm"),
        "mlp": {"intermediate": dense(f"{p}.intermediate.dense", (d,),
                                      (config.mlp_dim,)),
                "output": dense(f"{p}.output.dense", (config.mlp_dim,), (d,))},
        "mlp_norm": norm(f"{p}.output.LayerNorm")}
  unused = sorted(k for k in tensors
                  if k not in used and not k.startswith(NOT_ENCODER))
  if unused:
    raise ValueError(f"model.safetensors has tensors this encoder does not "
                     f"use ({len(unused)}): {', '.join(unused[:8])}; is "
                     "num_hidden_layers in config.json right?")
  return params


def import_bert(model_dir: str, output_dir: str) -> TransformerConfig:
  """Writes the BERT model in `model_dir` to `output_dir` with save_encoder
  (its tokenizer.json as the vocabulary); returns the encoder's config."""
  missing = [f for f in FILES if not os.path.isfile(os.path.join(model_dir, f))]
  if missing:
    raise FileNotFoundError(f"{model_dir} lacks {', '.join(missing)}; a BERT "
                            f"model directory holds {', '.join(FILES)}.")
  config = read_config(model_dir)
  with open(os.path.join(model_dir, "tokenizer.json"), "rb") as f:
    tokenizer = tokenizer_lib.WordPieceTokenizer(f.read())
  if tokenizer.vocab_size != config.vocab_size:
    raise ValueError(f"tokenizer.json has {tokenizer.vocab_size} ids but "
                     f"config.json vocab_size={config.vocab_size}.")
  params = encoder_params(
      read_weights(os.path.join(model_dir, "model.safetensors")), config)
  spec = checkpoint.encoder_spec(config, tokenizer)
  checkpoint.save_encoder(output_dir, params, spec, tokenizer)
  return config
