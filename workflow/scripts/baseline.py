"""Snakemake glue for rule baseline: see rnnlm.ngram.build_baseline."""

from rnnlm.ngram import build_baseline
from rnnlm.io import log_to

log_to(snakemake.log[0])
build_baseline(
    {split: snakemake.input[split] for split in ("train", "valid", "test")},
    snakemake.input.vocab,
    snakemake.params.order,
    snakemake.output.summary,
    snakemake.output.log_probs,
)
