# rnnlm-workflow: raw text -> tokens -> vocabulary -> index matrices -> trained RNN LM -> metrics, samples.
# Rules live in workflow/rules/*.smk; all logic lives in the `rnnlm` package, called by workflow/scripts/*.py.
import os

import yaml
from snakemake.sourcecache import LocalSourceFile
from snakemake.utils import min_version, validate

from rnnlm import workflow_config

min_version("9.0")


# The configuration: config.yaml of the working directory when it has one (a deployed copy, as with
# snakedeploy), else this workflow's own; --configfile and --config are merged into it key by key.
configfile: "config.yaml" if os.path.exists("config.yaml") else workflow.source_path("config.yaml")


CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"
with open(workflow.source_path(CONFIG_SCHEMA), encoding="utf-8") as schema_file:
    config_schema = yaml.safe_load(schema_file)
# Command-line strings to the schema's types, then validation, then integral numbers to int.
workflow_config.prepare(config, config_schema)
validate(config, CONFIG_SCHEMA)
workflow_config.finish(config, config_schema)


report: "workflow/report/workflow.rst"


# Jobs import the rnnlm package that sits beside this Snakefile, whether or not it is installed (and
# inside --use-conda environments, which hold only the third-party packages). current_basedir is this
# file's directory even when the workflow is used as a module (workflow.basedir is the caller's then);
# a module fetched from a git host has no local copy, and its jobs need rnnlm installed.
if isinstance(workflow.current_basedir, LocalSourceFile):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(workflow.current_basedir), os.environ.get("PYTHONPATH")])
    )

RESULTS = "results"
# Every included rule file adds the final artifacts it wants built by default.
ALL_TARGETS = []


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,
