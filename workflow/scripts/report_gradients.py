"""Snakemake glue for rule report_gradients: see rnnlm.report.build_gradient_report."""

from rnnlm.io import log_to
from rnnlm.report import build_gradient_report

log_to(snakemake.log[0])
build_gradient_report(dict(zip(snakemake.params.models, snakemake.input.diagnostics)), snakemake.output.png, snakemake.output.html)
