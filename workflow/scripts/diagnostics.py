"""Snakemake glue for rule diagnose_gradients: see rnnlm.diagnostics."""

from rnnlm.diagnostics import run_diagnostics
from rnnlm.io import log_to

log_to(snakemake.log[0])
run_diagnostics(
    snakemake.input.params,
    snakemake.input.valid,
    snakemake.output[0],
    seed=snakemake.params.seed,
    max_distance=snakemake.params.max_distance,
    max_sentences=snakemake.params.max_sentences,
    batch_size=snakemake.params.batch_size,
    device=snakemake.config["device"],
)
