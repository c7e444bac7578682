"""The store: one SQLite file per output folder that owns every table (detections, the file ledger, window
scores, labels) and its migrations, and the exports written from it. Other code calls its methods."""
