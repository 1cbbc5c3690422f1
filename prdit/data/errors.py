"""The errors of reading volumes, shared by the readers (:mod:`prdit.data.io`,
:mod:`prdit.data.dicom_series`) without either importing the other's module for them."""

from __future__ import annotations

from typing import Any


class VolumeReadError(ValueError):
    """A volume could not be read; the message names the file and the problem."""


class MultipleSeriesError(VolumeReadError):
    """A DICOM folder holds several series and none was chosen; ``.series`` lists them
    (:class:`prdit.data.dicom_series.SeriesInfo`)."""

    def __init__(self, message: str, series: list[Any]):
        super().__init__(message)
        self.series = series
