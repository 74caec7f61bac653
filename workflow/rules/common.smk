# Helpers shared by the rule files.
import math


def model_names():
    return list(config["models"])


def model_config(name):
    """Hyper-parameters of one model: validate() in the Snakefile has already filled in every default
    of the schema's $defs/model, so each entry holds the complete set."""
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


def train_runtime(name):
    """Minutes a training job may take: generous per epoch, since the corpus size is not known here.
    Raise it with --set-resources train:runtime=... for large corpora on a cluster."""
    return 10 + 10 * model_config(name)["epochs"]


wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
