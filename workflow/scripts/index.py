"""Snakemake glue for the index stage (rnnlm.data.build_index, or build_standard_index for a standard-split corpus)."""

from rnnlm.data import SPLIT_NAMES, build_index, build_standard_index
from rnnlm.io import log_to

log_to(snakemake.log[0])

outputs = {split: snakemake.output[split] for split in SPLIT_NAMES}
lengths = {"min_length": snakemake.params.min_sentence_length, "max_length": snakemake.params.max_sentence_length}
if "sentences" in snakemake.input.keys():
    build_index(
        snakemake.input.sentences,
        snakemake.input.vocab,
        outputs,
        snakemake.output.stats,
        **lengths,
        valid_fraction=snakemake.params.valid_fraction,
        test_fraction=snakemake.params.test_fraction,
        seed=snakemake.params.split_seed,
    )
else:
    build_standard_index(
        {split: snakemake.input[split] for split in SPLIT_NAMES}, snakemake.input.vocab, outputs, snakemake.output.stats, **lengths
    )
