r"""Reports: tables and figures from finished runs, one entry point each.

  python -m encdec_jax.reports.curves --workdirs=runs/en_de
  python -m encdec_jax.reports.transfer --runs=runs/classify
  python -m encdec_jax.reports.length --runs=runs/length --out=docs/figures
  python -m encdec_jax.reports.attention \
      --workdirs=runs/length/transformer,runs/length/attention
  python -m encdec_jax.reports.autoencoder --runs=runs/ae
  python -m encdec_jax.reports.captions --workdirs=runs/captions/attention
  python -m encdec_jax.reports.lm --workdirs=runs/lm

`common.py` holds what they share (flags, restoring a run, finished runs,
Markdown tables, figures).
"""
