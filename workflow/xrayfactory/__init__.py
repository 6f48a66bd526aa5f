"""xrayfactory: training data for interventional X-ray landmark detection, and its evaluation."""

__version__ = "0.1.0"
