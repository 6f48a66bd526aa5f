"""Shared machinery of every stage: errors, atomic writes, checkpoints and the training
engine, progress, random streams, device choice, the study-wide image normalisation, config
validation, checksummed downloads and the cluster bootstrap. Imports no other xrayfactory
subpackage.
"""
