"""Snakemake glue for rule report_loss_curves: see rnnlm.report.build_loss_figure."""

from rnnlm.io import log_to
from rnnlm.report import build_loss_figure

log_to(snakemake.log[0])
build_loss_figure(snakemake.input.log, snakemake.input.metrics, snakemake.wildcards.model, snakemake.output[0])
