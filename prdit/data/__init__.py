"""Data: the chest-CT phantom, medical-format readers/writers, preprocessing and datasets."""
