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
        # pydicom's decoder plugins for compressed pixel data (pydicom picks them up by itself). libjpeg (GPLv3,
        # run as a separate plugin package) is the only installed reader of JPEG Lossless (SV1 is the usual
        # PACS/CD syntax), JPEG-LS and 12-bit JPEG Extended; openjpeg reads the JPEG 2000 that Pillow's plugin
        # cannot (HTJ2K, over 16 bits stored). RLE stays with pydicom's own exact, if slower, decoder.
        "pylibjpeg>=2.1,<3",
        "pylibjpeg-libjpeg>=2.3,<3",
        "pylibjpeg-openjpeg>=2.4,<3",
        # NIfTI-1/2 cines and label maps (ofrnn ingest nifti): header spacing, units and affines done right.
        "nibabel>=5.2,<6",
        "scikit-learn>=1.4",
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    extras_require={"test": [
        "pytest>=8",
        # pydicom's JPEG-LS encoder: the ingest tests write real JPEG-LS files (libjpeg decodes them)
        "pyjpegls>=1.3",
    ]},
    entry_points={"console_scripts": ["ofrnn=ofrnn.cli:main"]},
)
