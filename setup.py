"""A thin shim for tools that still call setup.py; pyproject.toml holds all the metadata."""

from setuptools import setup

setup()
