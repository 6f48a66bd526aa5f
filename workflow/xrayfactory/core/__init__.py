"""Shared machinery of every stage: errors, atomic writes, checkpoints and the training
engine, progress, random streams, device choice, the study-wide image normalisation, config
validation and checksummed downloads. Imports no other xrayfactory subpackage.
"""
