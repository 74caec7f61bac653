"""Snakemake glue for rule evaluate: see rnnlm.evaluate.run_evaluation."""

from rnnlm.data import SPLIT_NAMES
from rnnlm.evaluate import run_evaluation
from rnnlm.io import log_to

# Errors (tracebacks ending in the RnnlmError message) and progress go to the rule's log.
log_to(snakemake.log[0])

run_evaluation(
    snakemake.input.params,
    {split: snakemake.input[split] for split in SPLIT_NAMES},
    snakemake.input.vocab,
    snakemake.output.metrics,
    device=snakemake.config["device"],
)
