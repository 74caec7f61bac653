"""Snakemake glue for rule baseline: see rnnlm.ngram.build_baseline."""

from rnnlm.data import SPLIT_NAMES
from rnnlm.io import log_to
from rnnlm.ngram import build_baseline

log_to(snakemake.log[0])
build_baseline(
    {split: snakemake.input[split] for split in SPLIT_NAMES},
    snakemake.input.vocab,
    snakemake.params.order,
    snakemake.output.summary,
    snakemake.output.log_probs,
)
