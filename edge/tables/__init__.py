"""Tables people bring and take away: label tables (Raven, Audacity, CSV), ground truth, and event-level
evaluation of detections against it."""
