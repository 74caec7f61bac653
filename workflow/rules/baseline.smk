# N-gram baseline and interpolation: an interpolated modified Kneser-Ney model of order
# baseline.order on the train split (results/baseline/kn{order}.json, plus its valid/test per-token
# log-probabilities), and each model's per-token mixture with it (results/models/{model}/interpolation.json).
# DATA_SPLIT_FILES and MODEL_DIR come from model.smk.

NGRAM_ORDER = config["baseline"]["order"]
NGRAM_SCORES = f"{RESULTS}/baseline/kn{NGRAM_ORDER}_log_probs.npz"

ALL_TARGETS.append(f"{RESULTS}/baseline/kn{NGRAM_ORDER}.json")
ALL_TARGETS.extend(expand(f"{RESULTS}/models/{{model}}/interpolation.json", model=model_names()))


rule baseline:
    input:
        **DATA_SPLIT_FILES,
        vocab=f"{RESULTS}/vocab/vocab.tsv",
    output:
        summary=f"{RESULTS}/baseline/kn{{order}}.json",
        log_probs=f"{RESULTS}/baseline/kn{{order}}_log_probs.npz",
    log:
        f"{RESULTS}/logs/baseline/kn{{order}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baseline/kn{{order}}.tsv"
    wildcard_constraints:
        order="[1-9][0-9]*",
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        # The three splits' arrays, plus arrays per distinct n-gram and one chunk's (rnnlm.ngram.CHUNK_TOKENS) work arrays.
        mem_mb=4000,
        runtime=20,
    params:
        order=lambda wildcards: int(wildcards.order),
    script:
        "../scripts/baseline.py"


rule interpolate:
    input:
        params=rules.train.output.params,
        vocab=f"{RESULTS}/vocab/vocab.tsv",
        ngram=NGRAM_SCORES,
        valid=DATA_SPLIT_FILES["valid"],
        test=DATA_SPLIT_FILES["test"],
    output:
        interpolation=f"{MODEL_DIR}/interpolation.json",
    log:
        f"{RESULTS}/logs/interpolate/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/interpolate/{{model}}.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 4
    resources:
        **device_resources(),
        mem_mb=lambda wildcards: model_mem_mb(wildcards.model),
        runtime=30,
    script:
        "../scripts/interpolate.py"
