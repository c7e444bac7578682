"""Annotation tables for training: the readers of `hootwatch.edge.tables.label_tables` (Raven selection tables, one row
per selection and multi-file tables included; Audacity label tracks; CSV `file,start_s,end_s,label`, read as the
evaluation reads its ground truth), which the benchmarks and the exports use too. Kept as the trainer's name for
them."""

from __future__ import annotations

from hootwatch.edge.tables.label_tables import (CSV_COLUMNS, LABEL_COLUMNS, RAVEN_SUFFIX, Annotation,
                                                AnnotationError, audio_for_table, find_tables, is_annotation_csv,
                                                is_audacity_labels, is_multi_file_raven, read_annotation_csv,
                                                read_audacity, read_raven, read_table)

__all__ = ["CSV_COLUMNS", "LABEL_COLUMNS", "RAVEN_SUFFIX", "Annotation", "AnnotationError", "audio_for_table",
           "find_tables", "is_annotation_csv", "is_audacity_labels", "is_multi_file_raven", "read_annotation_csv",
           "read_audacity", "read_raven", "read_table"]
