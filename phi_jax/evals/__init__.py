"""Evaluations: a sandbox for generated programs (execution.py), HumanEval and MBPP pass@k,
multiple-choice log-likelihood benchmarks, perplexity / bits per byte, and a periodic hook for
the training loop. Importing this package imports nothing heavy; the submodules do.
"""
