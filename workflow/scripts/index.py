"""Snakemake glue for the index stage (rnnlm.data.build_index)."""

import logging
import sys

from rnnlm.data import build_index

# Errors (tracebacks ending in the RnnlmError message) and progress both go to the rule's log.
sys.stderr = open(snakemake.log[0], "w", encoding="utf-8")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

build_index(
    snakemake.input.sentences,
    snakemake.input.vocab,
    {"train": snakemake.output.train, "valid": snakemake.output.valid, "test": snakemake.output.test},
    snakemake.output.stats,
    min_length=snakemake.params.min_sentence_length,
    max_length=snakemake.params.max_sentence_length,
    valid_fraction=snakemake.params.valid_fraction,
    test_fraction=snakemake.params.test_fraction,
    seed=snakemake.params.split_seed,
)
