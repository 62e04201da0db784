r"""Parameter groups, each with its own optimizer: optax.multi_transform.

Every parameter gets a group name from its path ("encoder/layers_0/mlp/
output/kernel") by the first matching rule in `config.param_groups`, a tuple of
(regex, group) pairs in the style of big_vision; the regex must match the whole
path and the group may use its groups (r"encoder/layers_(\d+)/.*" ->
r"encoder_\1"). The default rules give `encoder`, `decoder` and `head`.

Each group has its own AdamW, learning rate, schedule, weight decay and
clipping: the top-level optimizer fields are the defaults and
`config.group_optim.<group>` overrides them, e.g.

  c.group_optim = {"encoder": {"learning_rate": 1e-4, "schedule": "cosine"},
                   "decoder": {"learning_rate": 1e-3, "schedule": "rsqrt"}}
  c.frozen_groups = ("embeddings",)

A frozen group (in `frozen_groups`, or named "frozen" by a rule) gets
optax.set_to_zero: no optimizer state, and train_step does not differentiate
it at all.

The run's start (encdec_jax/starts/) may replace the rules (LoRA: the base
frozen, the adapters in their own groups) and freeze groups itself (a
transferred encoder starts frozen, as fastai's load_encoder).

ULMFiT (Howard & Ruder, 2018) is configuration, not code:
  c.layer_groups = ("head", "encoder_1", "encoder_0", "embeddings")  # top first
  c.lr_decay_per_group = 2.6   # layer_groups[i] trains at lr / 2.6**i
  c.unfreeze_every = 100       # layer_groups[i] starts training at step 100*i
Gradual unfreezing changes which groups train at a few steps (the stage
boundaries); the trainer then rebuilds the optimizer and `migrate_opt_state`
carries over the state of every group that was already training. A group that
starts late warms its learning rate up over its `warmup_steps`, since its Adam
moments start from zero.
"""

import dataclasses
import difflib
import re

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from encdec_jax import starts


DEFAULT_GROUP_RULES = (("encoder/.*", "encoder"), ("decoder/.*", "decoder"),
                 (".*", "head"))
FROZEN = "frozen"  # A rule may send parameters straight here.
GROUP_FIELDS = ("learning_rate", "schedule", "warmup_steps", "weight_decay",
                "grad_clip_norm", "adam_b1", "adam_b2")


SCHEDULES = ("cosine", "rsqrt", "linear", "constant")


def learning_rate_schedule(settings) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then the configured decay.

  `settings` is a config or dict with learning_rate, warmup_steps, schedule
  and num_train_steps.
  """
  peak, warmup = settings["learning_rate"], settings["warmup_steps"]
  total = settings["num_train_steps"]
  if settings["schedule"] not in SCHEDULES:
    raise ValueError(f"schedule={settings['schedule']!r} is not known; use "
                     f"one of {SCHEDULES}.")
  warmup_fn = optax.linear_schedule(0.0, peak, max(warmup, 1))
  decay_steps = max(total - warmup, 1)
  if settings["schedule"] == "cosine":
    decay_fn = optax.cosine_decay_schedule(peak, decay_steps, alpha=0.0)
  elif settings["schedule"] == "linear":
    decay_fn = optax.linear_schedule(peak, 0.0, decay_steps)
  elif settings["schedule"] == "rsqrt":
    # Transformer-paper decay, continuous with the warmup's end.
    decay_fn = lambda s: peak * jax.lax.rsqrt((s + max(warmup, 1)) /
                                               max(warmup, 1))
  else:
    decay_fn = optax.constant_schedule(peak)
  return optax.join_schedules([warmup_fn, decay_fn], [warmup])


def decay_mask(params):
  """Weight decay on matrices only: not on biases, LayerNorm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


@dataclasses.dataclass(frozen=True)
class Plan:
  """Who is in which group, each group's settings, and when it trains."""
  labels: dict  # flat {path tuple: group}
  settings: dict  # {group: {field: value}} (lr already scaled per group)
  start_steps: dict  # {group: first training step, or None if never}

  @property
  def groups(self) -> tuple[str, ...]:
    return tuple(sorted(self.settings))

  def training(self, step: int) -> frozenset:
    """The groups that train at `step`."""
    return frozenset(g for g, s in self.start_steps.items()
                     if s is not None and s <= step)

  def stage_boundaries(self) -> list[int]:
    """Steps > 0 at which the set of training groups changes."""
    return sorted({s for s in self.start_steps.values() if s})

  def trainable_mask(self, step: int) -> dict:
    """Flat {path: bool}: whether each parameter trains at `step`."""
    training = self.training(step)
    return {path: g in training for path, g in self.labels.items()}

  def label_tree(self, params):
    return traverse_util.unflatten_dict(
        {k: self.labels[k] for k in traverse_util.flatten_dict(params)})


def path_name(path: tuple) -> str:
  return "/".join(str(p) for p in path)


def _label(path: str, rules) -> str:
  for pattern, group in rules:
    match = re.fullmatch(pattern, path)
    if match:
      return match.expand(group)
  raise ValueError(f"parameter {path} matches no rule in config.param_groups; "
                   r"add a catch-all rule such as ('.*', 'head').")


def _did_you_mean(name: str, known) -> str:
  close = difflib.get_close_matches(name, list(known), n=1)
  return f" (did you mean {close[0]!r}?)" if close else ""


def _check_names(names, known, what: str) -> None:
  for name in names:
    if name not in known:
      raise ValueError(f"{what} names group {name!r}"
                       f"{_did_you_mean(name, known)}, but the model's groups "
                       f"are {sorted(known)}; see config.param_groups.")


def _group_settings(config, group: str) -> dict:
  settings = {k: config[k] for k in GROUP_FIELDS}
  overrides = dict(config.get("group_optim", {}).get(group, {}))
  for key in overrides:
    if key not in GROUP_FIELDS:
      raise ValueError(f"config.group_optim.{group}.{key} is not an optimizer "
                       f"setting{_did_you_mean(key, GROUP_FIELDS)}; use "
                       f"{GROUP_FIELDS}.")
  settings.update(overrides)
  return settings


def make_plan(config, params) -> Plan:
  """Groups, settings and start steps for `params` under `config`."""
  start = starts.get(config)
  rules = start.group_rules(config) or tuple(
      config.get("param_groups", DEFAULT_GROUP_RULES))
  labels = {path: _label(path_name(path), rules)
            for path in traverse_util.flatten_dict(params)}
  groups = sorted(set(labels.values()))
  layer_groups = tuple(config.get("layer_groups", ()))
  frozen = (set(config.get("frozen_groups", ())) | {FROZEN} |
            start.frozen(config, labels))
  _check_names(layer_groups, groups, "config.layer_groups")
  _check_names(set(frozen) - {FROZEN}, groups, "config.frozen_groups")
  _check_names(config.get("group_optim", {}).keys(), groups,
               "config.group_optim")
  every = config.get("unfreeze_every", 0)
  decay = config.get("lr_decay_per_group", 1.0)
  if every < 0 or decay <= 0:
    raise ValueError("config.unfreeze_every must be >= 0 and "
                     f"config.lr_decay_per_group > 0, got {every} and {decay}.")
  settings, start_steps = {}, {}
  for g in groups:
    settings[g] = _group_settings(config, g)
    start_steps[g] = None if g in frozen else 0
    if g in layer_groups:
      depth = layer_groups.index(g)
      settings[g]["learning_rate"] /= decay**depth
      if start_steps[g] is not None:
        start_steps[g] = depth * every
  return Plan(labels=labels, settings=settings, start_steps=start_steps)


def learning_rate_fn(settings: dict, start_step: int, num_train_steps: int):
  """Group lr as a function of the group's own update count.

  The group's schedule runs on the global step (count + start_step); a group
  that starts late also warms up from its start.
  """
  schedule = learning_rate_schedule(
      dict(settings, num_train_steps=num_train_steps))
  if not start_step:
    return schedule
  warmup = max(settings["warmup_steps"], 1)
  return lambda count: schedule(count + start_step) * jnp.minimum(
      (count + 1) / warmup, 1.0)


def _group_optimizer(settings: dict, start_step: int, num_train_steps: int):
  clip = settings["grad_clip_norm"]
  return optax.chain(
      optax.clip_by_global_norm(clip) if clip else optax.identity(),
      optax.adamw(learning_rate_fn(settings, start_step, num_train_steps),
                  b1=settings["adam_b1"], b2=settings["adam_b2"], eps=1e-9,
                  weight_decay=settings["weight_decay"],
                  mask=decay_mask))


def make_optimizer(plan: Plan, config, step: int, params):
  """The optimizer for the stage containing `step`.

  Global-norm clipping over all trainable gradients (`config.grad_clip_norm`),
  then one optimizer per group; groups not training at `step` get
  set_to_zero and hold no state.
  """
  training = plan.training(step)
  transforms = {
      g: (_group_optimizer(plan.settings[g], plan.start_steps[g],
                           config.num_train_steps)
          if g in training else optax.set_to_zero())
      for g in plan.groups}
  clip = (optax.clip_by_global_norm(config.grad_clip_norm)
          if config.grad_clip_norm else optax.identity())
  return optax.chain(clip, optax.multi_transform(transforms,
                                                 plan.label_tree(params)))


def migrate_opt_state(old_state, new_tx, params, keep: frozenset):
  """new_tx's state for params, with the groups in `keep` carried over."""
  fresh = new_tx.init(params)
  inner = dict(fresh[1].inner_states)
  for g in keep:
    inner[g] = old_state[1].inner_states[g]
  return (fresh[0], fresh[1]._replace(inner_states=inner))


def group_learning_rates(plan: Plan, config, step) -> dict:
  """{group: lr at global `step`} (0 for groups not training); jittable."""
  out = {}
  for g in plan.groups:
    start = plan.start_steps[g]
    if start is None:
      out[g] = jnp.zeros((), jnp.float32)
      continue
    lr_fn = learning_rate_fn(plan.settings[g], start, config.num_train_steps)
    out[g] = jnp.where(step >= start, lr_fn(jnp.maximum(step - start, 0)),
                       0.0).astype(jnp.float32)
  return out


def group_norms(plan: Plan, flat_grads: dict) -> dict:
  """{group: global norm of its gradients} over the given (trainable) grads."""
  by_group = {}
  for path, g in flat_grads.items():
    by_group.setdefault(plan.labels[path], []).append(g)
  return {g: optax.tree.norm(leaves) for g, leaves in by_group.items()}


def count_by_group(plan: Plan, params) -> dict:
  """{group: number of parameters}, for the run's log."""
  counts = dict.fromkeys(plan.groups, 0)
  for path, p in traverse_util.flatten_dict(params).items():
    counts[plan.labels[path]] += int(p.size)
  return counts


def opt_state_bytes(opt_state) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(opt_state)
             if hasattr(x, "nbytes"))
