"""Snakemake glue for the download stage (rnnlm.corpus.prepare_corpus)."""

from rnnlm.corpus import prepare_corpus
from rnnlm.io import log_to

log_to(snakemake.log[0])

prepare_corpus(
    snakemake.params.corpus,
    snakemake.output.documents,
    snakemake.output.manifest,
    corpus_format=snakemake.params.corpus_format,
    text_column=snakemake.params.text_column,
    checksum=snakemake.params.checksum,
    encoding_errors=snakemake.params.encoding_errors,
    # How patiently to download does not shape the corpus: config, not params (no rerun when changed).
    attempts=snakemake.config["download_attempts"],
    timeout=snakemake.config["download_timeout"],
)
