# Data stages: corpus -> documents -> sentences/tokens -> train/valid/test sentences -> vocabulary (train)
# -> index matrices.
# Each rule's params are exactly the config keys that shape its output (see docs/data.md), so a change
# re-runs that stage and what follows, and nothing before it.
import platform

from rnnlm.corpus import BUILTIN, local_corpus_path

DATA_SPLITS = ["train", "valid", "test"]
DATA_TARGETS = expand(f"{RESULTS}/data/{{split}}.npz", split=DATA_SPLITS) + [f"{RESULTS}/data/stats.json"]
ALL_TARGETS.extend(DATA_TARGETS)
# A standard-split corpus (corpus: {train, valid, test}) is three pretokenized files used as given:
# rule standard_splits replaces download, tokenize and split. Either way the vocabulary counts
# tokens/train.txt only and the index stage reads the three split files.
STANDARD_SPLITS = isinstance(config["corpus"], dict)
SPLIT_SENTENCES = {split: f"{RESULTS}/tokens/{split}.txt" for split in DATA_SPLITS}
SPLIT_STATS = f"{RESULTS}/tokens/split.json"
# A local corpus file is an input, so editing it re-runs the download stage.
LOCAL_CORPUS = None if STANDARD_SPLITS else local_corpus_path(config["corpus"])


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


if config["tokenize_shards"] == 1:

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

else:

    # Sharded tokenize (docs/data.md): Punkt parameters chosen once for the whole corpus, one job per
    # byte-balanced shard of documents.jsonl, then `tokenize` merges them into the same two artifacts,
    # byte for byte, as the unsharded rule above. The shards' own outputs are temporary.
    scattergather:
        tokenize=config["tokenize_shards"],

    TOKEN_SHARD = f"{RESULTS}/tokens/shards/{{scatteritem}}"

    rule sentence_splitter:
        input:
            documents=rules.download.output.documents,
        output:
            splitter=f"{RESULTS}/tokens/punkt.json",
        log:
            f"{RESULTS}/logs/data/sentence_splitter.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/sentence_splitter.tsv"
        conda:
            "../envs/rnnlm.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        params:
            # Punkt learns from the text it will split: the normalised one.
            normalize_quotes=config["normalize_quotes"],
        script:
            "../scripts/sentence_splitter.py"

    rule tokenize_shard:
        input:
            documents=rules.download.output.documents,
            splitter=rules.sentence_splitter.output.splitter,
        output:
            sentences=temp(f"{TOKEN_SHARD}/sentences.txt"),
            words=temp(f"{TOKEN_SHARD}/words.txt"),
            stats=temp(f"{TOKEN_SHARD}/stats.json"),
        log:
            f"{RESULTS}/logs/data/tokenize_shard/{{scatteritem}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/tokenize_shard/{{scatteritem}}.tsv"
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
            "../scripts/tokenize_shard.py"

    rule tokenize:
        input:
            sentences=gather.tokenize(f"{TOKEN_SHARD}/sentences.txt"),
            words=gather.tokenize(f"{TOKEN_SHARD}/words.txt"),
            stats=gather.tokenize(f"{TOKEN_SHARD}/stats.json"),
        output:
            sentences=f"{RESULTS}/tokens/sentences.txt",
            stats=f"{RESULTS}/tokens/stats.json",
        log:
            f"{RESULTS}/logs/data/tokenize.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/tokenize.tsv"
        conda:
            "../envs/rnnlm.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        script:
            "../scripts/merge_token_shards.py"


if STANDARD_SPLITS:

    ruleorder: standard_splits > tokenize

    rule standard_splits:
        input:
            **{split: config["corpus"][split] for split in DATA_SPLITS},
        output:
            **SPLIT_SENTENCES,
            stats=f"{RESULTS}/tokens/stats.json",
            split_stats=SPLIT_STATS,
        log:
            f"{RESULTS}/logs/data/standard_splits.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/standard_splits.tsv"
        conda:
            "../envs/rnnlm.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        params:
            unknown_token=config["corpus"]["unknown_token"],
            encoding_errors=config["encoding_errors"],
        script:
            "../scripts/standard_splits.py"

else:

    # Valid and test drawn as whole units (documents, blocks or sentences) before the vocabulary,
    # which then sees the train split only (docs/data.md).
    rule split:
        input:
            sentences=f"{RESULTS}/tokens/sentences.txt",
            manifest=rules.download.output.manifest,
        output:
            **SPLIT_SENTENCES,
            stats=SPLIT_STATS,
        log:
            f"{RESULTS}/logs/data/split.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/split.tsv"
        conda:
            "../envs/rnnlm.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            split_unit=config["split_unit"],
            split_block_sentences=config["split_block_sentences"],
            valid_fraction=config["valid_fraction"],
            test_fraction=config["test_fraction"],
            split_seed=config["split_seed"],
            min_sentence_length=config["min_sentence_length"],
            max_sentence_length=config["max_sentence_length"],
        script:
            "../scripts/split.py"


rule vocab:
    input:
        sentences=SPLIT_SENTENCES["train"],
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
        # Only the train sentences the index stage keeps are counted.
        min_sentence_length=config["min_sentence_length"],
        max_sentence_length=config["max_sentence_length"],
    script:
        "../scripts/vocab.py"


rule index:
    input:
        **SPLIT_SENTENCES,
        split_stats=SPLIT_STATS,
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
        # Applied to the train split (a standard-split corpus's; the split stage has applied them already).
        min_sentence_length=config["min_sentence_length"],
        max_sentence_length=config["max_sentence_length"],
    script:
        "../scripts/index.py"
