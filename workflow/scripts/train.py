"""Snakemake glue for rule train: see rnnlm.train.run_training."""

import logging
import sys
from pathlib import Path

from rnnlm.train import run_training

# Errors (tracebacks ending in the RnnlmError message), progress and the epoch lines go to the log.
sys.stderr = open(snakemake.log[0], "w", encoding="utf-8", buffering=1)
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

run_training(
    snakemake.input.train,
    snakemake.input.valid,
    snakemake.input.vocab,
    snakemake.output.params,
    # Beside the params file but not a declared output: it must outlive a killed job (see model.smk).
    Path(snakemake.output.params).with_name("checkpoint.npz"),
    snakemake.output.train_log,
    snakemake.params.hyperparameters,
    device=snakemake.params.device,
    dtype=snakemake.params.dtype,
    metadata={"lowercase": snakemake.params.lowercase},
)
