"""Snakemake glue for rule evaluate: see rnnlm.evaluate.run_evaluation."""

import logging
import sys

from rnnlm.evaluate import run_evaluation

# Errors (tracebacks ending in the RnnlmError message) and progress go to the rule's log.
sys.stderr = open(snakemake.log[0], "w", encoding="utf-8", buffering=1)
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

run_evaluation(
    snakemake.input.params,
    {split: snakemake.input[split] for split in ("train", "valid", "test")},
    snakemake.input.vocab,
    snakemake.output.metrics,
    device=snakemake.params.device,
)
