# Helpers shared by the rule files.
import math
import os

from rnnlm import resources
from rnnlm.data import Split
from rnnlm.vocab import Vocabulary


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
    """Memory for one model's job: interpreter and libraries, plus parameters held six times (current,
    best, gradients, update temporaries, checkpoint host copies), plus one batch's activations."""
    hyper = model_config(name)
    vocab, hidden, batch = config["vocabulary_size"], hyper["hidden_size"], hyper["batch_size"]
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[hyper["cell"]]
    item = 8 if config["dtype"] == "float64" else 4
    weights = gates * (hidden * vocab + hidden * hidden + hidden) + vocab * hidden + vocab
    activations = 4 * gates * batch * (config["max_sentence_length"] + 1) * hidden
    return 1000 + math.ceil(item * (6 * weights + activations) / 2**20)


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
