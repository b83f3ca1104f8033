"""What the paper reports (its numbers, transcribed once under `data_manifests/paper/`) and every choice where
its text and the authors' published code can be read two ways.

Layer 1: imports only the base modules.
"""
