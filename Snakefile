# rnnlm-workflow: raw text -> tokens -> vocabulary -> index matrices -> trained RNN LM -> metrics, samples.
# Rules live in workflow/rules/*.smk; all logic lives in the `rnnlm` package, called by workflow/scripts/*.py.
import os

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


# Jobs import the rnnlm package that sits beside this Snakefile, whether or not it is installed
# (and inside --use-conda environments, which hold only the third-party packages).
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

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
