"""Snakemake glue for rule report_time_to_quality: see rnnlm.report.build_time_to_quality_figure."""

from rnnlm.io import log_to
from rnnlm.report import build_time_to_quality_figure

log_to(snakemake.log[0])

build_time_to_quality_figure(
    dict(zip(snakemake.params.models, snakemake.input.logs)), snakemake.input.ngram, snakemake.output[0]
)
