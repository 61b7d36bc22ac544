"""Ingest real cines into a cohort: DICOM (:mod:`.dicom`, ``ofrnn ingest dicom``) and NIfTI
(:mod:`.nifti`, ``ofrnn ingest nifti``); what both share (time resampling, LV annotations, infarct
masks, subject ids, the skip report, the cohort write) is in :mod:`.common`; AHA segments and slice
levels from label maps are in :mod:`.aha`.

nibabel and pydicom are imported only when a file is read.
"""
from .aha import label_segments, slice_levels, slice_segments, view_sign
from .common import (ASSUMED_CYCLE_MS, DEFAULT_FRAMES, ENDO_BOX_MARGIN_MM, CineSlice, IngestReport, check_frames,
                     find_masks, nearest_frame, read_mask, resample_cycle, slice_to_subject, subject_ids, write_slices)
from .dicom import (contour_masks, find_contours, find_files, ingest_dicom, read_cine_slices, read_contour,
                    read_frames)
from .nifti import (ACDC_CAVITY, ACDC_MYOCARDIUM, ACDC_RV, ingest_nifti, nifti_volume_for,
                    read_label_masks, read_nifti_slices)

__all__ = ["label_segments", "slice_levels", "slice_segments", "view_sign", "ASSUMED_CYCLE_MS", "DEFAULT_FRAMES",
           "ENDO_BOX_MARGIN_MM", "CineSlice", "IngestReport", "check_frames", "find_masks", "nearest_frame",
           "read_mask", "resample_cycle", "slice_to_subject", "subject_ids", "write_slices", "contour_masks",
           "find_contours", "find_files", "ingest_dicom", "read_cine_slices", "read_contour", "read_frames",
           "ACDC_CAVITY", "ACDC_MYOCARDIUM", "ACDC_RV", "ingest_nifti", "nifti_volume_for", "read_label_masks",
           "read_nifti_slices"]
