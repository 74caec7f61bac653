"""Snakemake glue for rule report_samples: see rnnlm.report.build_samples_page."""

from rnnlm.io import log_to
from rnnlm.report import build_samples_page

log_to(snakemake.log[0])
build_samples_page(dict(zip(snakemake.params.models, snakemake.input.samples)), snakemake.output[0])
