"""Snakemake glue for rule train: see rnnlm.train.run_training."""

from pathlib import Path

from rnnlm.io import RnnlmError, log_to
from rnnlm.runlock import stop_with_snakemake
from rnnlm.tokenize import WordTokenizer
from rnnlm.train import Interrupted, run_training
from rnnlm.vocab import vocabulary_metadata

# Errors and progress go to the log; the epoch lines and errors also to the terminal.
log_to(snakemake.log[0])
# A training job orphaned by a killed Snakemake stops instead of racing the next run's trainer.
stop_with_snakemake()

try:
    run_training(
        snakemake.input.train,
        snakemake.input.valid,
        snakemake.input.vocab,
        snakemake.output.params,
        # Beside the params file but not a declared output: it must outlive a killed job (see model.smk).
        Path(snakemake.output.params).with_name("checkpoint.npz"),
        snakemake.output.train_log,
        snakemake.params.hyperparameters,
        device=snakemake.config["device"],
        dtype=snakemake.params.dtype,
        # Recorded in the params file so that generation and scoring tokenize like the training text.
        metadata={
            **WordTokenizer(snakemake.params.lowercase, snakemake.params.normalize_quotes).settings(),
            **vocabulary_metadata(snakemake.input.vocab),
        },
        name=snakemake.wildcards.model,
    )
except Interrupted as exc:
    # One line on the terminal and in the log (rnnlm.io): what is kept and how to resume.
    resume = "snakemake --rerun-incomplete resumes from it" if exc.kept else "the next snakemake run starts it again"
    raise RnnlmError(f"{exc}; {resume}") from None
