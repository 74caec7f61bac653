# Model stages, one job each per entry of `models:`: train -> evaluate, generate (results/models/{model}/).
# Training also keeps results/models/{model}/checkpoint.npz. It is deliberately not a declared output:
# Snakemake deletes the outputs of a failed or killed job, and the checkpoint must survive to be resumed.
# One thread per job: at these matrix sizes a second BLAS thread gains little, and OpenBLAS threads
# that spin-wait slow down several-fold when the cores are shared; raise it with --set-threads train=N.
# The paths (SPLIT_FILES, VOCAB_FILE, VOCAB_STATS, MODEL_FILES) come from common.smk.
# `device` is an execution setting, not a param: the scripts read it from the config, so running a
# finished model's stages on another device (or with other threads) re-runs nothing.

ALL_TARGETS.extend(
    expand(
        [MODEL_FILES[artifact] for artifact in ("params", "train_log", "metrics", "samples")],
        model=model_names(),
    )
)


rule train:
    input:
        train=SPLIT_FILES["train"],
        valid=SPLIT_FILES["valid"],
        vocab=VOCAB_FILE,
        # Read beside vocab.tsv: how many words UNKNOWN_TOKEN stands for, recorded for scoring.
        vocab_stats=VOCAB_STATS,
    output:
        params=MODEL_FILES["params"],
        train_log=MODEL_FILES["train_log"],
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        **device_resources(),
        mem_mb=lambda wildcards: model_mem_mb(wildcards.model),
        runtime=train_runtime,
    params:
        hyperparameters=lambda wildcards: model_config(wildcards.model),
        dtype=config["dtype"],
        # Recorded in the parameters file so that scoring and priming tokenize like the training text
        # (a standard-split corpus is used as given: neither applies).
        lowercase=config["lowercase"] and not STANDARD_SPLITS,
        normalize_quotes=config["normalize_quotes"] and not STANDARD_SPLITS,
    script:
        "../scripts/train.py"


rule evaluate:
    input:
        **SPLIT_FILES,
        params=rules.train.output.params,
        vocab=VOCAB_FILE,
    output:
        metrics=MODEL_FILES["metrics"],
    log:
        f"{RESULTS}/logs/evaluate/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        **device_resources(),
        mem_mb=lambda wildcards: model_mem_mb(wildcards.model),
        runtime=30,
    script:
        "../scripts/evaluate.py"


rule generate:
    input:
        params=rules.train.output.params,
    output:
        samples=MODEL_FILES["samples"],
    log:
        f"{RESULTS}/logs/generate/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate/{{model}}.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        **device_resources(),
        mem_mb=lambda wildcards: model_mem_mb(wildcards.model),
        runtime=30,
    params:
        settings=config["generate"],
    script:
        "../scripts/generate.py"
