# Data stages: corpus -> documents -> sentences/tokens -> vocabulary -> train/valid/test index matrices.
# Each rule's params are exactly the config keys that shape its output (see docs/data.md), so a change
# re-runs that stage and what follows, and nothing before it.
import platform

from rnnlm.corpus import BUILTIN, local_corpus_path

DATA_SPLITS = ["train", "valid", "test"]
DATA_TARGETS = expand(f"{RESULTS}/data/{{split}}.npz", split=DATA_SPLITS) + [f"{RESULTS}/data/stats.json"]
ALL_TARGETS.extend(DATA_TARGETS)
# A local corpus file is an input, so editing it re-runs the download stage.
LOCAL_CORPUS = local_corpus_path(config["corpus"])


rule download:
    input:
        [LOCAL_CORPUS] if LOCAL_CORPUS else [],
    output:
        documents=f"{RESULTS}/corpus/documents.jsonl",
        manifest=f"{RESULTS}/corpus/manifest.json",
    log:
        f"{RESULTS}/logs/data/download.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/download.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        # A local file is read through the job's input (its staged path where storage is not shared).
        corpus=lambda wildcards, input: input[0] if input else config["corpus"],
        corpus_format=config["corpus_format"],
        text_column=config["text_column"],
        checksum=config["checksum"],
        encoding_errors=config["encoding_errors"],
        # The built-in corpus is extracted from this interpreter's documentation.
        builtin_python=platform.python_version() if config["corpus"] == BUILTIN else "",
    script:
        "../scripts/download.py"


rule tokenize:
    input:
        documents=rules.download.output.documents,
    output:
        sentences=f"{RESULTS}/tokens/sentences.txt",
        stats=f"{RESULTS}/tokens/stats.json",
    log:
        f"{RESULTS}/logs/data/tokenize.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/tokenize.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 8
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        lowercase=config["lowercase"],
        normalize_quotes=config["normalize_quotes"],
    script:
        "../scripts/tokenize.py"


rule vocab:
    input:
        sentences=rules.tokenize.output.sentences,
    output:
        vocab=f"{RESULTS}/vocab/vocab.tsv",
        stats=f"{RESULTS}/vocab/stats.json",
    log:
        f"{RESULTS}/logs/data/vocab.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/vocab.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        vocabulary_size=config["vocabulary_size"],
        # Only the sentences the index stage keeps are counted.
        min_sentence_length=config["min_sentence_length"],
        max_sentence_length=config["max_sentence_length"],
    script:
        "../scripts/vocab.py"


rule index:
    input:
        sentences=rules.tokenize.output.sentences,
        vocab=rules.vocab.output.vocab,
    output:
        train=f"{RESULTS}/data/train.npz",
        valid=f"{RESULTS}/data/valid.npz",
        test=f"{RESULTS}/data/test.npz",
        stats=f"{RESULTS}/data/stats.json",
    log:
        f"{RESULTS}/logs/data/index.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/index.tsv"
    conda:
        "../envs/rnnlm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        min_sentence_length=config["min_sentence_length"],
        max_sentence_length=config["max_sentence_length"],
        valid_fraction=config["valid_fraction"],
        test_fraction=config["test_fraction"],
        split_seed=config["split_seed"],
    script:
        "../scripts/index.py"
