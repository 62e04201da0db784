"""--mode=export_encoder, export_adapter and merge_adapter: a trained
workdir's encoder or LoRA adapters written out for another run to use."""

from encdec_jax import checkpoint


def _check_output(mode: str, output: str) -> None:
  if output == "-":
    raise ValueError(f"--mode={mode} needs --output=DIR, a new directory.")


def export_encoder(config, workdir: str, output: str) -> None:
  del config  # the workdir's checkpoint says everything
  _check_output("export_encoder", output)
  step = checkpoint.export_encoder(workdir, output)
  print(f"saved the encoder of step {step} in {output}; fine-tune from it "
        f"with --config.init_encoder={output}")


def export_adapter(config, workdir: str, output: str) -> None:
  from encdec_jax.lora import store  # only LoRA runs need it
  _check_output("export_adapter", output)
  spec = store.export_adapter(config, workdir, output)
  print(f"saved the adapters of step {spec['step']} ({spec['num_params']:,} "
        f"params) in {output}; apply them with --config.lora.adapter="
        f"{output} and --workdir=<the base run, {spec['base']}>")


def merge_adapter(config, workdir: str, output: str) -> None:
  from encdec_jax.lora import store
  _check_output("merge_adapter", output)
  step = store.merge_adapter(config, workdir, output)
  print(f"merged the adapters of step {step} into the base: a plain workdir "
        f"in {output}; decode it with the same flags and --workdir={output}")
