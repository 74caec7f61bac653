# Figures and tables for `snakemake --report report.html`, all under results/report/.
# Every output is flagged with report(): category, caption (workflow/report/*.rst) and labels.
# The paths they read (MODEL_FILES, NGRAM_SUMMARY, ...) and DATA_SPLITS come from common.smk.

REPORT = f"{RESULTS}/report"


rule report_loss_curves:
    input:
        log=MODEL_FILES["train_log"],
        metrics=MODEL_FILES["metrics"],
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
        logs=expand(MODEL_FILES["train_log"], model=model_names()),
        ngram=NGRAM_SUMMARY,
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
        metrics=expand(MODEL_FILES["metrics"], model=model_names()),
        ngram=NGRAM_SUMMARY,
        interpolations=expand(MODEL_FILES["interpolation"], model=model_names()),
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
        samples=expand(MODEL_FILES["samples"], model=model_names()),
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
        vocab=VOCAB_FILE,
        splits=[SPLIT_FILES[split] for split in DATA_SPLITS],
        tokens_stats=TOKEN_STATS,
        split_stats=SPLIT_STATS,
        vocab_stats=VOCAB_STATS,
        data_stats=DATA_STATS,
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
        diagnostics=expand(GRADIENT_NORMS, model=model_names()),
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
    *expand(rules.report_loss_curves.output[0], model=model_names()),
    rules.report_time_to_quality.output[0],
    rules.report_perplexity.output.html,
    rules.report_samples.output[0],
    rules.report_corpus.output.html,
    rules.report_gradients.output.png,
]
