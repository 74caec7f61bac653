"""Snakemake glue for rule generate: see rnnlm.generate.run_generation."""

from rnnlm.io import log_to
from rnnlm.generate import GenerateConfig, run_generation

# Errors (tracebacks ending in the RnnlmError message) and progress go to the rule's log.
log_to(snakemake.log[0])

run_generation(
    snakemake.input.params,
    snakemake.output.samples,
    GenerateConfig(**snakemake.params.settings),
    device=snakemake.config["device"],
)
