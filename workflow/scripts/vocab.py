"""Snakemake glue for the vocab stage (rnnlm.vocab.build_vocabulary)."""

import logging
import sys

from rnnlm.vocab import build_vocabulary

# Errors (tracebacks ending in the RnnlmError message) and progress both go to the rule's log.
sys.stderr = open(snakemake.log[0], "w", encoding="utf-8")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

build_vocabulary(snakemake.input.sentences, snakemake.output.vocab, snakemake.output.stats, snakemake.params.vocabulary_size)
