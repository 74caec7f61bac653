"""Snakemake glue for rule generate: see rnnlm.generate.run_generation."""

import logging
import sys

from rnnlm.generate import GenerateConfig, run_generation

# Errors (tracebacks ending in the RnnlmError message) and progress go to the rule's log.
sys.stderr = open(snakemake.log[0], "w", encoding="utf-8", buffering=1)
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

run_generation(
    snakemake.input.params,
    snakemake.output.samples,
    GenerateConfig(**snakemake.params.settings),
    device=snakemake.params.device,
)
