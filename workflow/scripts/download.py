"""Snakemake glue for the download stage (rnnlm.corpus.prepare_corpus)."""

import logging
import sys

from rnnlm.corpus import prepare_corpus

# Errors (tracebacks ending in the RnnlmError message) and progress both go to the rule's log.
sys.stderr = open(snakemake.log[0], "w", encoding="utf-8")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

prepare_corpus(
    snakemake.params.corpus,
    snakemake.output.documents,
    snakemake.output.manifest,
    corpus_format=snakemake.params.corpus_format,
    text_column=snakemake.params.text_column,
    checksum=snakemake.params.checksum,
    encoding_errors=snakemake.params.encoding_errors,
)
