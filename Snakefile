# rnnlm-workflow: raw text -> tokens -> vocabulary -> index matrices -> trained RNN LM -> metrics, samples.
# Rules live in workflow/rules/*.smk; all logic lives in the `rnnlm` package, called by workflow/scripts/*.py.
import os

import yaml
from snakemake.sourcecache import LocalSourceFile
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from rnnlm import workflow_config
from rnnlm.io import RnnlmError

min_version("9.0")


# This file's directory, even when the workflow is used as a module (workflow.basedir is the
# caller's then); a module fetched from a git host has no local copy.
WORKFLOW_DIR = workflow.current_basedir
LOCAL_COPY = isinstance(WORKFLOW_DIR, LocalSourceFile)


# The configuration: config.yaml of the working directory when it has one (a deployed copy, as with
# snakedeploy), else this workflow's own; --configfile and --config are merged into it key by key.
OWN_CONFIG = (
    os.path.join(WORKFLOW_DIR.get_path_or_uri(secret_free=True), "config.yaml")
    if LOCAL_COPY
    else workflow.source_path("config.yaml")
)


configfile: "config.yaml" if os.path.exists("config.yaml") else OWN_CONFIG


CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"
with open(workflow.source_path(CONFIG_SCHEMA), encoding="utf-8") as schema_file:
    config_schema = yaml.safe_load(schema_file)
# Command-line strings to the schema's types, then validation, then integral numbers to int.
try:
    workflow_config.prepare(config, config_schema)
    validate(config, CONFIG_SCHEMA)
    workflow_config.finish(config, config_schema)
except RnnlmError as exc:  # one line, without the schema dump or a traceback
    raise WorkflowError(f"config: {exc}") from None


report: "workflow/report/workflow.rst"


# Jobs import the rnnlm package that sits beside this Snakefile, whether or not it is installed (and
# inside --use-conda environments, which hold only the third-party packages). Without a local copy
# (a module from a git host) the jobs need rnnlm installed.
if LOCAL_COPY:
    os.environ.update(
        PYTHONPATH=os.pathsep.join(
            filter(None, [WORKFLOW_DIR.get_path_or_uri(secret_free=True), os.environ.get("PYTHONPATH")])
        )
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
