"""Scanning recordings: which files and in what order, the scan engine that writes the store, detections
rebuilt for another operating point, review material, and scoring of recordings held in memory."""
