"""Snakemake glue for rule generate: see rnnlm.generate.run_generation."""

from rnnlm.generate import GenerateConfig, run_generation
from rnnlm.report import log_to

log_to(snakemake.log[0])
run_generation(
    snakemake.input.params,
    snakemake.output.samples,
    GenerateConfig(**snakemake.params.settings),
    device=snakemake.params.device,
)
