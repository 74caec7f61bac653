"""rnnlm: the library behind the rnnlm-workflow Snakemake pipeline.

One module per stage: corpus (download), tokenize, vocab, data (index matrices),
backend (NumPy/CuPy), model, train, evaluate, generate; cli exposes them as `rnnlm`.
"""

__version__ = "0.1.0"
