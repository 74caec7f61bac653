# Figures and tables for `snakemake --report report.html`, all under results/report/.
# Every output is flagged with report(): category, caption (workflow/report/*.rst) and labels.
# DATA_SPLITS comes from data.smk, NGRAM_ORDER from baseline.smk.

REPORT = f"{RESULTS}/report"


rule report_loss_curves:
    input:
        log=f"{RESULTS}/models/{{model}}/train_log.csv",
        metrics=f"{RESULTS}/models/{{model}}/metrics.json",
    output:
        report(
            f"{REPORT}/loss/{{model}}.png",
            caption="../report/loss_curves.rst",
            category="2. Training",
            subcategory="{model}",
            labels={"model": "{model}", "result": "loss curves"},
        ),
    log:
        f"{RESULTS}/logs/report/loss_curves_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/loss_curves_{{model}}.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/report_loss_curves.py"


rule report_time_to_quality:
    input:
        logs=expand(f"{RESULTS}/models/{{model}}/train_log.csv", model=model_names()),
        ngram=f"{RESULTS}/baseline/kn{NGRAM_ORDER}.json",
    output:
        report(
            f"{REPORT}/time_to_quality.png",
            caption="../report/time_to_quality.rst",
            category="2. Training",
            # Beside the per-model loss curves, not under Snakemake's "Other".
            subcategory="all models",
            labels={"model": "all", "result": "time to quality"},
        ),
    log:
        f"{RESULTS}/logs/report/time_to_quality.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/time_to_quality.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        models=model_names(),
    script:
        "../scripts/report_time_to_quality.py"


rule report_perplexity:
    input:
        metrics=expand(f"{RESULTS}/models/{{model}}/metrics.json", model=model_names()),
        ngram=f"{RESULTS}/baseline/kn{NGRAM_ORDER}.json",
        interpolations=expand(f"{RESULTS}/models/{{model}}/interpolation.json", model=model_names()),
    output:
        csv=report(
            f"{REPORT}/perplexity.csv",
            caption="../report/perplexity.rst",
            category="3. Perplexity",
            labels={"result": "perplexity table (CSV)"},
        ),
        html=report(
            f"{REPORT}/perplexity.html",
            caption="../report/perplexity.rst",
            category="3. Perplexity",
            labels={"result": "perplexity table"},
        ),
    log:
        f"{RESULTS}/logs/report/perplexity.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/perplexity.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        models=model_names(),
    script:
        "../scripts/report_perplexity.py"


rule report_samples:
    input:
        samples=expand(f"{RESULTS}/models/{{model}}/samples.txt", model=model_names()),
    output:
        report(
            f"{REPORT}/samples.html",
            caption="../report/samples.rst",
            category="4. Generated sentences",
            labels={"result": "samples of every model"},
        ),
    log:
        f"{RESULTS}/logs/report/samples.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/samples.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        models=model_names(),
    script:
        "../scripts/report_samples.py"


rule report_corpus:
    input:
        vocab=f"{RESULTS}/vocab/vocab.tsv",
        splits=expand(f"{RESULTS}/data/{{split}}.npz", split=DATA_SPLITS),
        tokens_stats=f"{RESULTS}/tokens/stats.json",
        split_stats=SPLIT_STATS,
        vocab_stats=f"{RESULTS}/vocab/stats.json",
        data_stats=f"{RESULTS}/data/stats.json",
    output:
        zipf=report(
            f"{REPORT}/zipf.png",
            caption="../report/zipf.rst",
            category="1. Corpus and vocabulary",
            labels={"result": "rank-frequency (Zipf) plot"},
        ),
        html=report(
            f"{REPORT}/corpus.html",
            caption="../report/corpus.rst",
            category="1. Corpus and vocabulary",
            labels={"result": "statistics and UNKNOWN_TOKEN rate"},
        ),
    log:
        f"{RESULTS}/logs/report/corpus.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/corpus.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        splits=DATA_SPLITS,
    script:
        "../scripts/report_corpus.py"


rule report_gradients:
    input:
        diagnostics=expand(f"{RESULTS}/diagnostics/{{model}}/gradient_norms.json", model=model_names()),
    output:
        png=report(
            f"{REPORT}/gradient_norms.png",
            caption="../report/gradient_norms.rst",
            category="5. Vanishing gradient",
            labels={"result": "gradient norm against distance"},
        ),
        html=report(
            f"{REPORT}/gradient_norms.html",
            caption="../report/gradient_summary.rst",
            category="5. Vanishing gradient",
            labels={"result": "spectral radius and decay per model"},
        ),
    log:
        f"{RESULTS}/logs/report/gradients.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/gradients.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        models=model_names(),
    script:
        "../scripts/report_gradients.py"


ALL_TARGETS += [
    *expand(f"{REPORT}/loss/{{model}}.png", model=model_names()),
    f"{REPORT}/time_to_quality.png",
    f"{REPORT}/perplexity.html",
    f"{REPORT}/samples.html",
    f"{REPORT}/corpus.html",
    f"{REPORT}/gradient_norms.png",
]
