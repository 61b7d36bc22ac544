"""ofrnn: an open Keras reproduction of OF-RNN (Xu et al., MICCAI 2017)."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "ofrnn" / "_version.py").read_text(), version)

setup(
    name="ofrnn",
    version=version["__version__"],
    description="Pixel-level myocardial infarction detection from cine CMR (OF-RNN, MICCAI 2017), in Keras",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["ofrnn", "ofrnn.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "numpy>=1.26,<3",
        "scipy>=1.11",
        "scikit-image>=0.22",
        # contrib: cv2.optflow (DeepFlow, Dual TV-L1) and cv2.ximgproc (selective search); never
        # install opencv-python-headless beside it, both own the cv2/ folder.
        "opencv-contrib-python-headless>=4.9",
        # TensorFlow 2.21 caps h5py below 3.15.
        "h5py>=3.10,<3.15",
        "pydicom>=3,<4",
        "scikit-learn>=1.4",
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    extras_require={"test": ["pytest>=8"]},
    entry_points={"console_scripts": ["ofrnn=ofrnn.cli:main"]},
)
