"""Snakemake glue for the split stage (rnnlm.split.split_corpus)."""

from rnnlm.data import SPLIT_NAMES
from rnnlm.io import log_to
from rnnlm.split import split_corpus

log_to(snakemake.log[0])

split_corpus(
    snakemake.input.sentences,
    {split: snakemake.output[split] for split in SPLIT_NAMES},
    snakemake.output.stats,
    manifest_path=snakemake.input.manifest,
    unit=snakemake.params.split_unit,
    block_sentences=snakemake.params.split_block_sentences,
    valid_fraction=snakemake.params.valid_fraction,
    test_fraction=snakemake.params.test_fraction,
    seed=snakemake.params.split_seed,
    min_length=snakemake.params.min_sentence_length,
    max_length=snakemake.params.max_sentence_length,
)
