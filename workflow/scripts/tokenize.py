"""Snakemake glue for the tokenize stage (rnnlm.tokenize.tokenize_corpus)."""

import logging
import sys

from rnnlm.tokenize import tokenize_corpus

# Errors (tracebacks ending in the RnnlmError message) and progress both go to the rule's log.
sys.stderr = open(snakemake.log[0], "w", encoding="utf-8")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

tokenize_corpus(
    snakemake.input.documents,
    snakemake.output.sentences,
    snakemake.output.stats,
    lowercase=snakemake.params.lowercase,
    processes=snakemake.threads,
)
