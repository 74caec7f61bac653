# Vanishing-gradient diagnostics: for each trained model, mean |dL_t/ds_(t-k)| against the distance k
# on validation sentences, for the trained parameters and for the same model re-initialised with its
# seed, plus the spectral radius of W before and after training (results/diagnostics/{model}/).


rule diagnose_gradients:
    input:
        params=MODEL_FILES["params"],
        valid=SPLIT_FILES["valid"],
    output:
        report(
            GRADIENT_NORMS,
            caption="../report/gradient_json.rst",
            category="5. Vanishing gradient",
            labels={"result": "numbers of model {model} (JSON)"},
        ),
    log:
        f"{RESULTS}/logs/diagnostics/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/diagnostics/{{model}}.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        **device_resources(),
        # The trained and the re-initialised model are held at the same time.
        mem_mb=lambda wildcards: 2 * model_mem_mb(wildcards.model),
        runtime=30,
    params:
        seed=lambda wildcards: model_config(wildcards.model)["seed"],
        max_distance=config["diagnostics"]["max_distance"],
        max_sentences=config["diagnostics"]["max_sentences"],
        batch_size=config["diagnostics"]["batch_size"],
    script:
        "../scripts/diagnostics.py"
