# N-gram baseline and interpolation: an interpolated modified Kneser-Ney model of order
# baseline.order on the train split (results/baseline/kn{order}.json, plus its valid/test per-token
# log-probabilities), and each model's per-token mixture with it (results/models/{model}/interpolation.json).
# The paths (SPLIT_FILES, VOCAB_FILE, MODEL_FILES, BASELINE_FILES, NGRAM_*) come from common.smk.
from rnnlm.interpolate import SCORED_SPLITS

ALL_TARGETS.append(NGRAM_SUMMARY)
ALL_TARGETS.extend(expand(MODEL_FILES["interpolation"], model=model_names()))


rule baseline:
    input:
        **SPLIT_FILES,
        vocab=VOCAB_FILE,
    output:
        **BASELINE_FILES,
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
        **{split: SPLIT_FILES[split] for split in SCORED_SPLITS},
        params=MODEL_FILES["params"],
        vocab=VOCAB_FILE,
        ngram=NGRAM_SCORES,
    output:
        interpolation=MODEL_FILES["interpolation"],
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
