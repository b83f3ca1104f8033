"""Datasets: the registry of manifests (`data_manifests/datasets/`), the sources that read files and Hugging Face
repositories, split carving, zero-shot templates and text dictionaries.

Layer 1: imports only the base modules. A provider above it (the toy world) is reached through the registry's
source table, an entry looked up by name at load time, never by an import here.
"""
