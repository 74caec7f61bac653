# Vanishing-gradient diagnostics: for each trained model, mean |dL_t/ds_(t-k)| against the distance k
# on validation sentences, for the trained parameters and for the same model re-initialised with its
# seed, plus the spectral radius of W before and after training (results/diagnostics/{model}/).


rule diagnose_gradients:
    input:
        params=f"{RESULTS}/models/{{model}}/params.npz",
        valid=f"{RESULTS}/data/valid.npz",
    output:
        f"{RESULTS}/diagnostics/{{model}}/gradient_norms.json",
    params:
        seed=lambda wildcards: model_config(wildcards.model)["seed"],
        max_distance=config["diagnostics"]["max_distance"],
        max_sentences=config["diagnostics"]["max_sentences"],
        batch_size=config["diagnostics"]["batch_size"],
    log:
        f"{RESULTS}/logs/diagnose_gradients/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/diagnose_gradients/{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/diagnostics.py"
