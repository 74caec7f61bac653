"""Snakemake glue for rule interpolate: see rnnlm.interpolate.interpolate_model."""

from rnnlm.interpolate import SCORED_SPLITS, interpolate_model
from rnnlm.io import log_to

log_to(snakemake.log[0])
interpolate_model(
    snakemake.input.params,
    snakemake.input.vocab,
    {split: snakemake.input[split] for split in SCORED_SPLITS},
    snakemake.input.ngram,
    snakemake.output.interpolation,
    device=snakemake.config["device"],
)
