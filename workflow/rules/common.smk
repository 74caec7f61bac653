# Helpers shared by the rule files, and every artifact path that more than one rule file names.
import os

from rnnlm import resources
from rnnlm.data import SPLIT_NAMES, Split
from rnnlm.vocab import Vocabulary

# Artifact paths, each defined once: the rule that writes one names it here as its output, and
# every rule that reads it names it here too (within one file, readers take rules.<rule>.output).
DATA_SPLITS = list(SPLIT_NAMES)
SPLIT_FILES = {split: f"{RESULTS}/data/{split}.npz" for split in DATA_SPLITS}
DATA_STATS = f"{RESULTS}/data/stats.json"
VOCAB_FILE = f"{RESULTS}/vocab/vocab.tsv"
VOCAB_STATS = f"{RESULTS}/vocab/stats.json"
TOKEN_STATS = f"{RESULTS}/tokens/stats.json"
SPLIT_STATS = f"{RESULTS}/tokens/split.json"
MODEL_DIR = f"{RESULTS}/models/{{model}}"
MODEL_FILES = {
    "params": f"{MODEL_DIR}/params.npz",
    "train_log": f"{MODEL_DIR}/train_log.csv",
    "metrics": f"{MODEL_DIR}/metrics.json",
    "samples": f"{MODEL_DIR}/samples.txt",
    "interpolation": f"{MODEL_DIR}/interpolation.json",
}
GRADIENT_NORMS = f"{RESULTS}/diagnostics/{{model}}/gradient_norms.json"
NGRAM_ORDER = config["baseline"]["order"]
BASELINE_FILES = {
    "summary": f"{RESULTS}/baseline/kn{{order}}.json",
    "log_probs": f"{RESULTS}/baseline/kn{{order}}_log_probs.npz",
}
# The baseline of the configured order, as the later stages read it.
NGRAM_SUMMARY, NGRAM_SCORES = (path.format(order=NGRAM_ORDER) for path in BASELINE_FILES.values())


def model_names():
    """The models this run builds (`build_models`, else every entry of `models:`)."""
    return workflow_config.selected_models(config)


def model_config(name):
    """Hyper-parameters of one model: the Snakefile has already filled in every default of the
    schema's $defs/model, so each entry holds the complete set."""
    return dict(config["models"][name])


def device_resources():
    """`gpu=1` for jobs running the model when device is gpu; nothing GPU-related otherwise (auto
    takes a GPU only when the node happens to have one)."""
    return {"gpu": 1} if config["device"] == "gpu" else {}


def model_mem_mb(name):
    """Memory for one model's job (rnnlm.resources.model_memory_mb)."""
    return resources.model_memory_mb(
        model_config(name), config["vocabulary_size"], config["max_sentence_length"], config["dtype"]
    )


def train_runtime(wildcards, input):
    """Minutes a training job may take (SLURM --time): estimated from the model, the data's token
    counts and train_runtime.speed, at most train_runtime.max_minutes (docs/cluster.md); an entry of
    train_runtime.minutes replaces it. Until the index matrices exist (a dry run in a fresh directory)
    the cap stands in: Snakemake evaluates resources again when it submits the job."""
    settings = config["train_runtime"]
    if wildcards.model in settings["minutes"]:
        return settings["minutes"][wildcards.model]
    if not all(os.path.exists(path) for path in (input.train, input.valid, input.vocab)):
        return settings["max_minutes"]
    return resources.train_minutes(
        model_config(wildcards.model),
        len(Vocabulary.load(input.vocab)),
        Split.count_tokens(input.train),
        Split.count_tokens(input.valid),
        settings["speed"],
        settings["max_minutes"],
    )


wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
